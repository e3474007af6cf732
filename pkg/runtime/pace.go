package runtime

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/stats"
)

// maxWindow bounds the adaptive window: deep enough that a flood of
// no-op tasks streams (the broker's round trips overlap), small enough
// that one runtime cannot take a whole job of short tasks at once.
const maxWindow = 1024

// pacer sizes how many tasks a runtime holds (its window on the bus:
// running, waiting for a slot, and finished but not yet acked) from what
// it observes, by Little's law: to keep the slots busy, the runtime must
// hold what the slots finish while a finished task travels to its ack
// (event publication, the ack's round trip) and a new one comes from the
// broker (another round trip). Floods of short tasks get a deep window,
// long tasks a shallow one (a slot's worth and a spare), so that they
// stay spread over runtimes.
type pacer struct {
	slots int
	win   *bus.Window

	mu       sync.Mutex
	runs     [15]time.Duration // the last run times, a ring
	next     int               // where the next run time goes in runs
	run      float64           // seconds a task runs (median of runs)
	settle   float64           // seconds from a task's end to its ack's confirmation
	ack      float64           // seconds an ack takes: a round trip to the broker
	observed bool
	size     int
	// churnUntil: a redelivered task came (runtimes are dying or losing
	// their connections); until then the window stays shallow.
	churnUntil time.Time
	// resized is when the pacer last changed the window itself, and
	// shrank whether that change made it smaller.
	resized time.Time
	shrank  bool
	now     func() time.Time // time.Now; tests replace it
}

// resizeEcho is how long after the pacer changes the window a redelivered
// task is taken for an echo of that change rather than for runtimes
// dying: a bus may hand back to the queue what was on its way to a
// consumer it cancels to change the window. The RabbitMQ bus cancelled
// and replaced its consumer at every change, and a quorum queue counted
// those messages as delivered once more; taking that echo for churn
// shrank the window, the next growth echoed again, and a flood of short
// tasks ran at a window of slots+1 most of the time (2,100 tasks/s
// instead of 13,500). It now grows a window with one more consumer and
// cancels one only when nothing is on its way to it, except after a
// shrink in a flood that never fills it (see bus/rabbitmq); this guard
// stays for that case and for other buses.
const resizeEcho = 2 * time.Second

// churnFor is how long the window stays shallow after a redelivered task
// arrives. A task waiting in the buffer of a runtime that dies is
// delivered once more, toward its limit of deliveries, without having
// run: while runtimes churn, holding few tasks keeps that from using up a
// task's deliveries.
const churnFor = 10 * time.Second

// redelivered notes a task that was delivered before (Attempt > 1).
func (p *pacer) redelivered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.resized) < resizeEcho {
		return
	}
	p.churnUntil = now.Add(churnFor)
	if n := p.slots + 1; p.size > n {
		p.setSize(n, now)
	}
}

// resizeGap is how long the pacer keeps a window before it changes it
// again, except to grow it once more after growing it (a ramp: a job of
// 10,000 no-op tasks is over within half a second) or to shrink it to a slot's worth and a spare
// (long tasks must spread over runtimes at once). Short tasks on a busy
// machine stray from their averages, and with them the target, by
// several times from one task to the next: resized at every such change,
// a window changed 150 times a second, and on RabbitMQ each change
// starts or cancels a consumer.
const resizeGap = 500 * time.Millisecond

// setSize changes the window. Called with p.mu held.
func (p *pacer) setSize(n int, now time.Time) {
	p.shrank = n < p.size
	p.size = n
	p.resized = now
	p.win.Set(n)
}

// newPacer starts at twice the slots: shallow until tasks show they are
// short, so that the first long tasks of a job spread over runtimes.
func newPacer(slots int) *pacer {
	n := 2 * slots
	return &pacer{slots: slots, win: bus.NewWindow(n), size: n, now: time.Now}
}

// ewma weighs a new observation by 1/8.
func ewma(avg, x float64, first bool) float64 {
	if first {
		return x
	}
	return avg + (x-avg)/8
}

// settled records one task that ran for run, was acked settle after it
// ended, the ack taking ack; and resizes the window.
func (p *pacer) settled(run, settle, ack time.Duration) {
	p.settledMany([]settledTask{{run, settle, ack}})
}

// settledTask is what the pacer learns of one settled task.
type settledTask struct {
	run, settle, ack time.Duration
}

// settledMany records the tasks of one acked batch and resizes the window
// once for them all: taken one by one, the lock, the clock and the target
// were a twentieth of the runtime's processor time in a flood.
func (p *pacer) settledMany(ts []settledTask) {
	if len(ts) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	first := !p.observed
	p.observed = true
	// The run time is the median of the last few: a short task that was
	// descheduled (a GC pause, a busy machine) must not collapse the
	// window, and a job of long tasks still shows within a few tasks.
	// The median moves only when run times change: it is taken again
	// (sorting a copy on the stack) for a run time far from it, and every
	// eighth task otherwise, which in a flood of short tasks halves what
	// the pacer costs.
	median := first
	for i, t := range ts {
		p.runs[p.next%len(p.runs)] = t.run
		p.next++
		if x := t.run.Seconds(); p.next%8 == 0 || x > 2*p.run || x < p.run/2 {
			median = true
		}
		p.settle = ewma(p.settle, t.settle.Seconds(), first && i == 0)
		p.ack = ewma(p.ack, t.ack.Seconds(), first && i == 0)
	}
	if median {
		recent := p.runs
		sorted := recent[:min(p.next, len(p.runs))]
		slices.Sort(sorted)
		p.run = stats.Sorted(sorted, 50).Seconds()
	}
	now := p.now()
	n := p.target(now)
	// Resize on a real change only: a RabbitMQ consumer changes its
	// window with a few round trips. Shrinking takes a loss of a quarter
	// and growing a gain of a quarter, and of at least two, so that a
	// target wobbling by one near the shallow end does not resize at
	// every task; and either waits for resizeGap, but for a prompt ramp
	// and a prompt fall to long tasks' depth.
	settledDown := now.Sub(p.resized) >= resizeGap
	switch d := n - p.size; {
	case d < 0 && (n <= p.slots+2 || 4*-d >= p.size && settledDown):
		p.setSize(n, now)
	case d > 0 && d >= max(2, p.size/4) && (settledDown || !p.shrank):
		p.setSize(n, now)
	}
}

// target is the window the averages ask for at now (shallow while
// runtimes churn).
func (p *pacer) target(now time.Time) int {
	if now.Before(p.churnUntil) {
		return p.slots + 1
	}
	perSlot := (p.settle + p.ack) / math.Max(p.run, 1e-6)
	n := p.slots + int(math.Ceil(2*float64(p.slots)*perSlot))
	return min(max(n, p.slots+1), maxWindow)
}
