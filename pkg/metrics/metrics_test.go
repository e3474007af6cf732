package metrics

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
)

// The exposition of odd names and values parses with Prometheus' parser
// and keeps them as they were.
func TestExpoParses(t *testing.T) {
	var buf bytes.Buffer
	e := NewExpo(&buf)
	e.Family("x_total", "counter", "help with \\ and\nnewline")
	odd := "a\"b\\c\nd é"
	e.Sample("x_total", 3, "pool", odd)
	e.Sample("x_total", 1e21, "pool", "big")
	h := NewHistogram([]float64{0.1, 1})
	for _, v := range []float64{0.05, 0.5, 0.5, 7} {
		h.Observe(v)
	}
	e.Family("y_seconds", "histogram", "h")
	e.Histogram("y_seconds", h.Snapshot(), "pool", "p")
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	x := fams["x_total"]
	if x.GetHelp() != "help with \\ and\nnewline" || len(x.Metric) != 2 || x.Metric[0].Label[0].GetValue() != odd || x.Metric[1].Counter.GetValue() != 1e21 {
		t.Errorf("x_total parsed as %v", x)
	}
	y := fams["y_seconds"].Metric[0].Histogram
	if y.GetSampleCount() != 4 || y.GetSampleSum() != 8.05 || y.Bucket[0].GetCumulativeCount() != 1 || y.Bucket[1].GetCumulativeCount() != 3 {
		t.Errorf("histogram parsed as %v", y)
	}
}

// Observations from many goroutines are all counted, in the right
// buckets, and the task path allocates nothing.
func TestPoolConcurrentAndAllocationFree(t *testing.T) {
	m := NewCoordinator()
	p := m.pool("p")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker := "w" + strconv.Itoa(g)
			for i := 0; i < 1000; i++ {
				now := time.Now().UnixNano()
				p.Started(worker)
				p.Ended(worker, coordinator.TaskDone, now-int64(2*time.Millisecond), now)
			}
		}()
	}
	wg.Wait()
	if p.done.Load() != 8000 || p.started.Load() != 8000 {
		t.Errorf("done %d started %d, want 8000", p.done.Load(), p.started.Load())
	}
	d := p.duration.Snapshot()
	if d.Count != 8000 || d.Counts[1] != 8000 { // 2 ms: the (1 ms, 5 ms] bucket
		t.Errorf("duration histogram %+v", d)
	}
	if n := p.workers.count(time.Now().Add(-time.Minute).UnixNano()); n != 8 {
		t.Errorf("%d workers active, want 8", n)
	}
	now := time.Now().UnixNano()
	allocs := testing.AllocsPerRun(1000, func() {
		p.Published(1)
		p.Started("w1")
		p.Ended("w1", coordinator.TaskRetried, now-1000, now)
		p.Ended("w1", coordinator.TaskDone, now-1000, now)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per task, want 0", allocs)
	}
}

// A worker not heard of within the window is no longer active; a full
// table still counts the workers it holds.
func TestWorkerSetWindow(t *testing.T) {
	var s workerSet
	base := int64(1_000_000_000_000)
	s.see("old", base, 0)
	s.see("new", base+int64(10*time.Minute), 0)
	if n := s.count(base + int64(5*time.Minute)); n != 1 {
		t.Errorf("%d active, want 1", n)
	}
	for i := 0; i < 2*workerSlots; i++ {
		s.see("w"+strconv.Itoa(i), base+int64(time.Hour), base)
	}
	if n := s.count(base + int64(time.Hour)); n < workerSlots/2 || n > workerSlots {
		t.Errorf("%d active in a full table of %d", n, workerSlots)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
		ok     bool
	}{
		{"127.0.0.1:9090", false, true},
		{"localhost:9090", false, true},
		{"[::1]:0", false, true},
		{":9090", false, false},
		{"0.0.0.0:9090", false, false},
		{"10.1.2.3:9090", false, false},
		{":9090", true, true},
		{"nonsense", true, false},
	} {
		err := CheckAddr(c.addr, c.public)
		if (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, %v) = %v", c.addr, c.public, err)
		}
		if !c.ok && !c.public && err != nil && !errors.Is(err, ErrPublicAddr) {
			t.Errorf("CheckAddr(%q) = %v, want ErrPublicAddr", c.addr, err)
		}
	}
}

// A runtime's exposition parses and carries its stats and host restarts.
func TestWriteRuntime(t *testing.T) {
	var buf bytes.Buffer
	err := WriteRuntime(&buf, RuntimeScrape{
		Stats: runtime.Stats{Pool: "gpu", Worker: "h-1", Slots: 4, Busy: 3, Held: 5, Window: 9, Ran: 42},
		Hosts: map[string]any{"py": restarter(2), "cmd": struct{}{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	for name, want := range map[string]float64{"skein_runtime_slots_busy": 3, "skein_runtime_prefetch_depth": 5, "skein_runtime_attempts_total": 42, "skein_runtime_host_restarts_total": 2} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Errorf("%s: %v", name, f)
			continue
		}
		m := f.Metric[0]
		got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

type restarter int64

func (r restarter) Restarts() int64 { return int64(r) }

// /healthz answers while the process does; /readyz answers 503 with the
// reason until ready returns nil.
func TestProbes(t *testing.T) {
	mux := http.NewServeMux()
	var notReady atomic.Pointer[string]
	reason := "the bus is not connected"
	notReady.Store(&reason)
	Probes(mux, func() error {
		if r := notReady.Load(); r != nil {
			return errors.New(*r)
		}
		return nil
	})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, reason) {
		t.Errorf("/readyz while not ready: %d %q", code, body)
	}
	notReady.Store(nil)
	if code, body := get("/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
}
