package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live, floor uint64
		base, want  int
	}{
		{live: 4 << 20, floor: 64 << 20, base: 100, want: 1500}, // goal 4 MiB × 16 = 64 MiB
		{live: 32 << 20, floor: 64 << 20, base: 100, want: 100}, // already there at the base
		{live: 48 << 20, floor: 64 << 20, base: 100, want: 100},
		{live: 200 << 20, floor: 64 << 20, base: 100, want: 100}, // above the floor: the base
		{live: 20 << 20, floor: 64 << 20, base: 50, want: 220},
		{live: 1, floor: 64 << 20, base: 100, want: 1600}, // the collector's own minimum (4 MiB × GOGC/100) reaches the floor
		{live: 0, floor: 64 << 20, base: 100, want: 100},  // nothing measured yet
	} {
		if got := Percent(c.live, c.floor, c.base); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.live, c.floor, c.base, got, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "64MiB": 64 << 20, "512 KiB": 512 << 10, "1GiB": 1 << 30, "1000": 1000} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "64MB", "-1", "lots", "99999999999999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
}

// sink keeps allocations from being optimised away.
var sink []byte

// churn allocates n bytes of garbage in small pieces, as a task loop does.
func churn(n int) {
	for i := 0; i < n/512; i++ {
		sink = make([]byte, 512)
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func gcs() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

// With a small live heap, the floor collects far less often than the
// default growth for the same garbage; stop gives the percentage back.
func TestApplyCollectsLessOften(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	runtime.GC()
	n := gcs()
	churn(256 << 20)
	plain := gcs() - n

	stop := Apply(64 << 20)
	runtime.GC() // the first finalizer run sets the percentage
	deadline := time.Now().Add(5 * time.Second)
	for gogc() == 100 {
		if time.Now().After(deadline) {
			t.Fatal("the floor did not raise GOGC after a collection")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	n = gcs()
	churn(256 << 20)
	floored := gcs() - n
	stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC after stop = %d, want the base 100", got)
	}
	t.Logf("collections for 256 MiB of garbage: %d at GOGC=100, %d with a 64 MiB floor", plain, floored)
	if floored*3 > plain {
		t.Errorf("%d collections with the floor against %d without: want at most a third", floored, plain)
	}
}
