package runtime

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The window follows the tasks: deep for floods of short tasks, a spare
// or so per slot for long ones, and it comes back down when a job of
// long tasks follows a flood.
func TestPacerWindow(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name             string
		slots            int
		run, settle, ack time.Duration
		min, max         int
	}{
		{"no-op flood", 2, 5 * time.Microsecond, 2 * ms, ms, maxWindow, maxWindow},
		{"1ms tasks", 4, ms, 2 * ms, ms, 20, 40},
		{"half-second tasks", 2, 500 * ms, 2 * ms, ms, 3, 3},
		{"minute tasks, many slots", 16, time.Minute, 5 * ms, 2 * ms, 17, 17},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPacer(c.slots)
			for range 100 {
				p.settled(c.run, c.settle, c.ack)
			}
			if n, _ := p.win.Size(); n < c.min || n > c.max {
				t.Errorf("window %d, want %d to %d", n, c.min, c.max)
			}
		})
	}
	p := newPacer(2)
	for range 100 {
		p.settled(5*time.Microsecond, 2*ms, ms)
	}
	for range 100 {
		p.settled(500*ms, 2*ms, ms)
	}
	if n, _ := p.win.Size(); n != 3 {
		t.Errorf("window %d after long tasks followed a flood, want 3", n)
	}
}

// TestPacerShallowWhileRuntimesChurn: a redelivered task (a runtime died
// holding it) makes the window shallow at once and keeps it so while
// short tasks settle: every task held when a runtime dies is delivered
// once more without having run, toward its limit of deliveries.
func TestPacerShallowWhileRuntimesChurn(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPacer(2)
	p.now = func() time.Time { return now }
	for range 50 {
		p.settled(100*time.Microsecond, 5*time.Millisecond, time.Millisecond)
	}
	if n, _ := p.win.Size(); n <= 10 {
		t.Fatalf("a flood of short tasks: window %d, want deep", n)
	}
	now = now.Add(resizeEcho) // not an echo of the pacer's own growth
	p.redelivered()
	if n, _ := p.win.Size(); n != 3 {
		t.Fatalf("after a redelivery: window %d, want slots+1 = 3", n)
	}
	for range 50 {
		p.settled(100*time.Microsecond, 5*time.Millisecond, time.Millisecond)
	}
	if n, _ := p.win.Size(); n != 3 {
		t.Fatalf("short tasks settling within %v of a redelivery: window %d, want 3", churnFor, n)
	}
}

// TestPacerIgnoresTheEchoOfItsOwnResize: a task handed back by the bus
// while the pacer's own resize replaced its consumer (RabbitMQ) is not
// taken for runtimes dying; one redelivered later is.
func TestPacerIgnoresTheEchoOfItsOwnResize(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPacer(2)
	p.now = func() time.Time { return now }
	for range 50 {
		p.settled(100*time.Microsecond, 5*time.Millisecond, time.Millisecond)
	}
	deep, _ := p.win.Size()
	if deep <= 10 {
		t.Fatalf("a flood of short tasks: window %d, want deep", deep)
	}
	now = now.Add(resizeEcho / 2)
	p.redelivered()
	if n, _ := p.win.Size(); n != deep {
		t.Fatalf("a redelivery %v after the pacer grew the window: window %d, want it kept at %d", resizeEcho/2, n, deep)
	}
	for range 50 {
		p.settled(100*time.Microsecond, 5*time.Millisecond, time.Millisecond)
	}
	if n, _ := p.win.Size(); n != deep {
		t.Fatalf("short tasks after the echo: window %d, want %d", n, deep)
	}
	now = now.Add(resizeEcho)
	p.redelivered()
	if n, _ := p.win.Size(); n != 3 {
		t.Fatalf("a redelivery %v after the last resize: window %d, want slots+1 = 3", resizeEcho, n)
	}
}

// TestPacerSteadyNearShallow: tasks whose target wavers between slots+1
// and slots+2 (their settle time around a quarter of their run) resize the
// window at most twice, not at every wobble: on RabbitMQ each resize
// replaces the consumer and costs what was in flight a delivery.
func TestPacerSteadyNearShallow(t *testing.T) {
	ms := time.Millisecond
	p := newPacer(2)
	resizes := 0
	last, _ := p.win.Size()
	for i := range 400 {
		// The average settle time wobbles around 24 ms, where the target
		// turns from slots+1 to slots+2 for 100 ms tasks.
		settle := 18 * ms
		if i%2 == 1 {
			settle = 30 * ms
		}
		p.settled(100*ms, settle, ms)
		if n, _ := p.win.Size(); n != last {
			resizes++
			last = n
		}
	}
	if resizes > 2 {
		t.Errorf("%d resizes of the window for tasks of one kind, want at most 2", resizes)
	}
	if last < 3 || last > 4 {
		t.Errorf("window %d, want 3 or 4", last)
	}
}

// TestPacerSteadyInANoisyFlood: a flood of 1 ms tasks on a busy machine
// (run times from a third to three times that, settle and ack times
// varying tenfold from task to task) resizes the window a few times a
// second at most (a shrink, then growth by steps), not at every task
// that strays: on RabbitMQ a resize
// starts or cancels a consumer, and a window resized 150 times a second
// cancelled consumers faster than what was on its way to them arrived
// (a task's deliveries used up within seconds, no runtime failing).
// Growing fast from the start still happens at once.
func TestPacerSteadyInANoisyFlood(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPacer(2)
	p.now = func() time.Time { return now }
	rng := rand.New(rand.NewPCG(1, 2))
	span := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	start := now
	var ramped time.Duration // when the window first reached 50
	resizes := 0
	last, _ := p.win.Size()
	for now.Sub(start) < 5*time.Second {
		run := span(300*time.Microsecond, 3*time.Millisecond)
		p.settled(run, span(10*time.Millisecond, 70*time.Millisecond), span(3*time.Millisecond, 50*time.Millisecond))
		now = now.Add(run / 2) // two slots
		n, _ := p.win.Size()
		if n >= 50 && ramped == 0 {
			ramped = now.Sub(start)
		}
		if n != last && now.Sub(start) > time.Second {
			resizes++
		}
		last = n
	}
	t.Logf("%d resizes, ramped in %v, window %d", resizes, ramped, last)
	if resizes > 16 {
		t.Errorf("%d resizes in 4 s of one flood, want at most 16", resizes)
	}
	if ramped == 0 || ramped > 50*time.Millisecond {
		t.Errorf("window reached 50 after %v, want within 50 ms of the first task", ramped)
	}
	if last < 20 {
		t.Errorf("window %d at the end of the flood, want deep", last)
	}
}
