package coordinator

import (
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

func TestPaceTarget(t *testing.T) {
	for _, c := range []struct {
		rate  float64
		run   time.Duration
		limit int64
		want  int64
	}{
		{25000, 0, 8192, 8192},                  // a flood: the whole bound
		{200, 10 * time.Millisecond, 8192, 603}, // 1.5 × 200 × 2.01 s
		{2, time.Second, 8192, 9},               // 1.5 × 2 × 3 s
		{1, 200 * time.Millisecond, 8192, 8},    // 3.3: the floor
		{1, 200 * time.Millisecond, 4, 4},       // a bound below the floor
		{40, 10 * time.Second, 8192, 720},       // 400 running at once
	} {
		if got := paceTarget(c.rate, c.run, c.limit); got != c.want {
			t.Errorf("paceTarget(%v, %v, %d) = %d, want %d", c.rate, c.run, c.limit, got, c.want)
		}
	}
}

func TestJobPaceMeasures(t *testing.T) {
	var p jobPace
	t0 := time.Unix(1000, 0)
	// 100 ms tasks ending at 20 a second: the window is 1 s (four run
	// times are less).
	var rate float64
	var run time.Duration
	var ok bool
	for k := 0; k <= 40; k++ {
		done := int64(2 * k)
		rate, run, ok = p.measure(paceSample{at: t0.Add(time.Duration(k) * 100 * time.Millisecond), done: done, run: time.Duration(done) * 100 * time.Millisecond})
		if k < 10 && ok {
			t.Fatalf("a measurement after %d ms, before the shortest window", k*100)
		}
	}
	if !ok || rate < 19.9 || rate > 20.1 || run != 100*time.Millisecond {
		t.Fatalf("measured %v tasks/s of %v (ok %v), want 20 of 100ms", rate, run, ok)
	}
	// Samples older than the longest window are dropped.
	p.measure(paceSample{at: t0.Add(time.Hour), done: 100, run: 100 * 100 * time.Millisecond})
	if len(p.samples) != 1 {
		t.Fatalf("%d samples kept after an hour, want 1", len(p.samples))
	}
	// Too few ended: no measurement.
	var q jobPace
	q.measure(paceSample{at: t0})
	if _, _, ok := q.measure(paceSample{at: t0.Add(2 * time.Second), done: 3, run: 3 * time.Second}); ok {
		t.Fatal("measured from 3 tasks")
	}
}

func TestPacerRemembers(t *testing.T) {
	var p pacer
	now := time.Unix(1000, 0)
	k := paceKey("default", "sleep")
	if got := p.start(k, 8192, now); got != 8192 {
		t.Fatalf("unknown function starts at %d, want the bound", got)
	}
	p.learn(k, 200, 10*time.Millisecond, now)
	if got := p.start(k, 8192, now); got != 603 {
		t.Fatalf("start %d, want 603", got)
	}
	// A slower job (it shared the runtimes) does not lower the rate.
	p.learn(k, 20, 10*time.Millisecond, now.Add(time.Second))
	if got := p.start(k, 8192, now.Add(time.Second)); got < 600 {
		t.Fatalf("start %d after a slower job, want about 603", got)
	}
	// It decays: half after the half-life.
	if got := p.start(k, 8192, now.Add(time.Second+paceMemoryHalfLife)); got < 300 || got > 303 {
		t.Fatalf("start %d a half-life later, want about 302", got)
	}
	// A pace measured before the one remembered (an older end record
	// read later) counts decayed by its age: it does not raise the rate
	// as if it were new.
	var o pacer
	o.learn(k, 100, time.Millisecond, now)
	o.learn(k, 400, time.Millisecond, now.Add(-2*paceMemoryHalfLife))
	if m := o.fns[k]; m.rate != 100 || !m.at.Equal(now) {
		t.Fatalf("after an older, faster pace: %+v, want 100 tasks/s at %v", m, now)
	}
	o.learn(k, 1000, time.Millisecond, now.Add(-paceMemoryHalfLife))
	if m := o.fns[k]; m.rate != 500 {
		t.Fatalf("after an older pace, twice as fast once decayed: %+v, want 500 tasks/s", m)
	}
	// From end records: only a done job that ran long enough.
	var e pacer
	st := wire.JobStatus{State: wire.StateDone, Done: 100, TasksPerSec: 50, TaskRunMeanUs: 20000, Ended: now.UnixNano()}
	e.learnEnd(k, st)
	if m, ok := e.fns[k]; !ok || m.rate != 50 || m.run != 20*time.Millisecond {
		t.Fatalf("from an end record: %+v, %v", m, ok)
	}
	for _, bad := range []wire.JobStatus{
		{State: wire.StateFailed, Done: 100, TasksPerSec: 50, Ended: now.UnixNano()},
		{State: wire.StateDone, Done: 3, TasksPerSec: 1, Ended: now.UnixNano()},
		{State: wire.StateDone, Done: 100, TasksPerSec: 1000, Ended: now.UnixNano()}, // 0.1 s
		{State: wire.StateDone, Done: 100, Ended: now.UnixNano()},
	} {
		var b pacer
		b.learnEnd(k, bad)
		if len(b.fns) != 0 {
			t.Errorf("learnt from %+v", bad)
		}
	}
	for i := range paceMemoryFunctions + 10 {
		p.learn(paceKey("default", string(rune('a'+i%26))+time.Duration(i).String()), 1, 0, now)
	}
	if len(p.fns) > paceMemoryFunctions {
		t.Fatalf("%d functions remembered, bound %d", len(p.fns), paceMemoryFunctions)
	}
}
