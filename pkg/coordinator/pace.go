package coordinator

import (
	"math"
	"sync"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// A job's backlog (Config.JobBacklog) bounds its map tasks queued or
// running, so that a job submitted later waits behind that many of each
// running job's tasks rather than all of them. A bound that suits floods
// of no-op tasks (thousands) makes a later job wait minutes behind long
// tasks; one that suits long tasks (tens) slows floods. So each job's
// bound follows its pace, between paceMin and JobBacklog:
//
//   - While its tasks are being published, every progress tick measures
//     the rate at which its tasks end and their mean run time over the
//     last second or more (a few run times for long tasks), and sets the
//     bound to paceTarget: the tasks running at that pace (rate × run
//     time, Little's law) and paceHeadroom's worth more, times 1.5. A job
//     whose bound is what holds it back runs everything it has, so its
//     rate is its bound over the run time and the bound grows by half at
//     each measurement until the runtimes' slots are full; a job whose
//     runtimes are saturated settles at 1.5 × what they run plus the
//     headroom.
//   - A job starts from the pace of earlier jobs of the same function on
//     the same pool (pacer), which every coordinator of the namespace
//     reads from the end records on the job log (a restarted one from
//     those in its recover window): the best rate, decaying by half every
//     paceMemoryHalfLife so that a fleet that shrank is forgotten. A
//     function never seen starts at JobBacklog, as a flood of short tasks
//     must (starting small costs such a flood 6–9 %, docs/benchmarks.md).
//
// The bound never takes back tasks already queued: a first job of a
// function of long tasks still queues JobBacklog of them.
const (
	// paceHeadroom is what a job keeps queued beyond what runs, in time
	// at its pace. Runtimes need far less (a refill takes an event and a
	// publication, milliseconds), but a smaller bound publishes smaller
	// batches: with half a second, 50 concurrent 1,000-task jobs on
	// RabbitMQ published in batches of a few dozen and lost about a tenth
	// of their aggregate rate. A later job waits behind about 1.5 × this
	// of each running job's short tasks.
	paceHeadroom = 2 * time.Second
	paceMin      = 8
	// paceWindowMin and paceWindowMax bound the span a job's rate is
	// measured over (four mean run times in between).
	paceWindowMin = time.Second
	paceWindowMax = 30 * time.Second
	// paceMinEnded is how many tasks must end in the window for a
	// measurement.
	paceMinEnded        = 4
	paceMemoryHalfLife  = 10 * time.Minute
	paceMemoryFunctions = 1024
)

// paceTarget is the backlog that keeps a job's tasks flowing at rate
// (tasks per second) with mean run time run, within [paceMin, limit].
func paceTarget(rate float64, run time.Duration, limit int64) int64 {
	t := 1.5 * rate * (run + paceHeadroom).Seconds()
	if math.IsNaN(t) || t > float64(limit) {
		return limit
	}
	return max(int64(math.Ceil(t)), min(paceMin, limit))
}

// paceSample is a job's progress at a tick: map tasks ended and the sum
// of their run times.
type paceSample struct {
	at   time.Time
	done int64
	run  time.Duration
}

// jobPace is a job's measurements (its run loop's).
type jobPace struct {
	samples []paceSample
}

// measure adds s and returns the rate and mean run time over the window
// ending at s; ok is false while too few tasks ended in it.
func (p *jobPace) measure(s paceSample) (rate float64, run time.Duration, ok bool) {
	p.samples = append(p.samples, s)
	window := paceWindowMin
	if s.done > 0 {
		window = min(max(4*s.run/time.Duration(s.done), paceWindowMin), paceWindowMax)
	}
	// Drop what no window reaches any more.
	k := 0
	for k < len(p.samples)-1 && s.at.Sub(p.samples[k].at) > paceWindowMax {
		k++
	}
	p.samples = p.samples[k:]
	// The newest sample at least window old (the oldest when none is).
	from := p.samples[0]
	for _, o := range p.samples {
		if s.at.Sub(o.at) < window {
			break
		}
		from = o
	}
	span := s.at.Sub(from.at)
	ended := s.done - from.done
	if span < paceWindowMin || ended < paceMinEnded {
		return 0, 0, false
	}
	return float64(ended) / span.Seconds(), (s.run - from.run) / time.Duration(ended), true
}

// pacer remembers the pace of the functions a coordinator ran.
type pacer struct {
	mu  sync.Mutex
	fns map[string]paceMemory
}

type paceMemory struct {
	rate float64 // tasks per second, the most seen (decaying)
	run  time.Duration
	at   time.Time
}

func paceKey(pool, function string) string { return pool + "\x00" + function }

// start is the backlog a new job of key starts with.
func (p *pacer) start(key string, limit int64, now time.Time) int64 {
	p.mu.Lock()
	m, ok := p.fns[key]
	p.mu.Unlock()
	if !ok {
		return limit
	}
	return paceTarget(m.decayed(now), m.run, limit)
}

// learnEnd records the pace of a job that ended done (st, whose pace
// fields the job's owner filled in: finish) if it ran long enough for its
// pace to be its own, not its start's: paceMinEnded tasks over
// paceWindowMin at least. Every coordinator of a namespace learns from
// every end record on the job log (own.go), the owner from its own job.
func (p *pacer) learnEnd(key string, st wire.JobStatus) {
	if st.State != wire.StateDone || st.TasksPerSec <= 0 || st.Done < paceMinEnded ||
		float64(st.Done)/st.TasksPerSec < paceWindowMin.Seconds() {
		return
	}
	p.learn(key, st.TasksPerSec, time.Duration(st.TaskRunMeanUs)*time.Microsecond, time.Unix(0, st.Ended))
}

// learn records a pace measured at at: its rate counts when it beats the
// decayed memory (a job that shared the runtimes with others ran slower
// than the function can), its run time when it is the newest. A pace
// measured before the one remembered (an older end record read later)
// counts decayed by its age.
func (p *pacer) learn(key string, rate float64, run time.Duration, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fns == nil {
		p.fns = make(map[string]paceMemory)
	}
	m, ok := p.fns[key]
	if !ok && len(p.fns) >= paceMemoryFunctions {
		for k := range p.fns { // forget one
			delete(p.fns, k)
			break
		}
	}
	if ok && at.Before(m.at) {
		older := paceMemory{rate: rate, at: at}
		m.rate = max(m.rate, older.decayed(m.at))
		p.fns[key] = m
		return
	}
	p.fns[key] = paceMemory{rate: max(rate, m.decayed(at)), run: run, at: at}
}

func (m paceMemory) decayed(now time.Time) float64 {
	if m.at.IsZero() {
		return 0
	}
	return m.rate * math.Exp2(-now.Sub(m.at).Seconds()/paceMemoryHalfLife.Seconds())
}
