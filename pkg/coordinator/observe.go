package coordinator

import (
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// Observer is told what the coordinator records, for metrics (pkg/metrics
// implements it). Pool is called once per job, when the job starts (or is
// taken up again); the PoolObserver it returns is then called for each of
// the job's tasks, from the job's event loop and its publishing
// goroutines, concurrently and with the job's lock held: its methods must
// be safe for concurrent use, must not block, and should cost no more than
// a few atomic operations. A job rebuilt from its events after it ended
// (a replay to serve its results) is not observed.
type Observer interface {
	Pool(name string) PoolObserver
}

// PoolObserver counts one pool's tasks (see Observer).
type PoolObserver interface {
	// Published counts n first attempts put on the pool's queue (map or
	// call tasks, and reducers).
	Published(n int)
	// Started: an attempt reported it started (worker is the runtime's
	// Event.Worker). Short tasks report no start.
	Started(worker string)
	// Ended: an attempt's terminal event was recorded. started and
	// finished are the runtime's clock (unix ns, 0 when unknown); the
	// completion latency is finished to now.
	Ended(worker string, outcome TaskOutcome, started, finished int64)
}

// TaskOutcome is what the coordinator made of an attempt's terminal
// event.
type TaskOutcome uint8

const (
	TaskDone    TaskOutcome = iota + 1 // the task is done
	TaskRetried                        // the attempt failed; the task is queued again
	TaskFailed                         // the task failed for good
)

// observe passes one recorded event to the job's pool observer. Called
// from onEvent with j.mu held.
func (j *job) observe(o outcome, worker string, begun, finished int64) {
	p := j.mon.obs
	if p == nil {
		return
	}
	switch o {
	case started:
		p.Started(worker)
	case succeeded:
		p.Ended(worker, TaskDone, begun, finished)
	case retried:
		p.Ended(worker, TaskRetried, begun, finished)
	case failed:
		p.Ended(worker, TaskFailed, begun, finished)
	}
}

// observePublished counts first attempts put on a queue.
func (j *job) observePublished(n int) {
	if p := j.mon.obs; p != nil {
		p.Published(n)
	}
}

// JobInfo is what the coordinator holds of a job, for a dashboard.
type JobInfo struct {
	Status         wire.JobStatus
	Function       string
	ReduceFunction string
	Pool           string
	// Ended is when the job ended (zero while it runs).
	Ended time.Time
}

// Jobs lists the jobs this coordinator holds: running ones, and ended ones
// for Config.Retention. The order is not defined.
func (c *Coordinator) Jobs() []JobInfo {
	c.mu.Lock()
	jobs := make([]*job, 0, len(c.jobs))
	for _, j := range c.jobs {
		if j.replayEnd == nil {
			jobs = append(jobs, j)
		}
	}
	c.mu.Unlock()
	out := make([]JobInfo, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, JobInfo{Status: j.snapshot(), Function: j.spec.Function, ReduceFunction: j.spec.ReduceFunction,
			Pool: j.spec.Pool, Ended: j.endedAt()})
	}
	return out
}

// LeaseHeld reports whether the coordinator may act on its jobs: it has
// not joined its namespace yet, or its lease is current.
func (c *Coordinator) LeaseHeld() bool { return c.leaseHeld() }
