package metrics

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/telemetry"
	"github.com/skeinrun/skein/pkg/wire"
)

// DurationBuckets are the task-duration histogram's bounds in seconds:
// from 1 ms (no-op tasks) to an hour.
var DurationBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// LatencyBuckets are the completion-latency histogram's bounds in seconds,
// the same as the OpenTelemetry histogram's (50 µs to 10 s).
var LatencyBuckets = telemetry.LatencyBuckets

// DefaultActiveWindow is how recently a runtime must have reported a task
// event to count in skein_runtimes_active.
const DefaultActiveWindow = 5 * time.Minute

// Coordinator holds a coordinator's task metrics. It implements
// coordinator.Observer (Config.Observer); JobEnded goes in the Ended hook.
// Safe for concurrent use.
type Coordinator struct {
	// ActiveWindow: see DefaultActiveWindow.
	ActiveWindow time.Duration

	mu    sync.Mutex
	pools map[string]*Pool
	ended map[wire.JobState]uint64
}

var _ coordinator.Observer = (*Coordinator)(nil)

// NewCoordinator returns empty metrics.
func NewCoordinator() *Coordinator {
	return &Coordinator{ActiveWindow: DefaultActiveWindow, pools: make(map[string]*Pool), ended: make(map[wire.JobState]uint64)}
}

// Pool returns the counters of pool, made on first use.
func (m *Coordinator) Pool(name string) coordinator.PoolObserver { return m.pool(name) }

func (m *Coordinator) pool(name string) *Pool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[name]
	if p == nil {
		p = &Pool{name: name, window: int64(m.ActiveWindow), latency: NewHistogram(LatencyBuckets), duration: NewHistogram(DurationBuckets)}
		m.pools[name] = p
	}
	return p
}

// JobEnded counts a job that reached a final state (coordinator
// Hooks.Ended).
func (m *Coordinator) JobEnded(st wire.JobStatus) {
	m.mu.Lock()
	m.ended[st.State]++
	m.mu.Unlock()
}

// Pool is one pool's task counters (coordinator.PoolObserver). Every
// method is a few atomic operations.
type Pool struct {
	name   string
	window int64

	published, started, done, failed, retried atomic.Uint64
	latency, duration                         *Histogram
	workers                                   workerSet
}

// Published counts first attempts put on the queue.
func (p *Pool) Published(n int) { p.published.Add(uint64(n)) }

// Started counts an attempt that reported its start.
func (p *Pool) Started(worker string) {
	p.started.Add(1)
	p.seen(worker)
}

// Ended counts an attempt's terminal event.
func (p *Pool) Ended(worker string, o coordinator.TaskOutcome, started, finished int64) {
	switch o {
	case coordinator.TaskDone:
		p.done.Add(1)
	case coordinator.TaskRetried:
		p.retried.Add(1)
	case coordinator.TaskFailed:
		p.failed.Add(1)
	}
	now := p.seen(worker)
	if started > 0 && finished >= started {
		p.duration.Observe(float64(finished-started) / 1e9)
	}
	if o != coordinator.TaskRetried && finished > 0 {
		p.latency.Observe(float64(max(now-finished, 0)) / 1e9)
	}
}

func (p *Pool) seen(worker string) int64 {
	now := time.Now().UnixNano()
	if worker != "" {
		p.workers.see(worker, now, now-2*p.window)
	}
	return now
}

// QueueDepther is a bus that can tell how many messages a queue holds
// (natsbus and rabbitmq implement it).
type QueueDepther interface {
	QueueDepth(ctx context.Context, queue string) (int, error)
}

// ConnStats is a bus that reports its connection (natsbus and rabbitmq).
type ConnStats interface {
	Connected() bool
	Reconnects() uint64
}

// Scrape is what a coordinator's exposition reads besides the counters.
type Scrape struct {
	// Jobs are the jobs the coordinator holds (Coordinator.Jobs).
	Jobs []coordinator.JobInfo
	// Bus is checked for QueueDepther and ConnStats; nil: no bus metrics.
	Bus any
	// Lease reports whether the coordinator holds its lease.
	Lease func() bool
}

var jobStates = []wire.JobState{wire.StatePending, wire.StateRunning, wire.StateDone, wire.StateFailed, wire.StateCancelled, wire.StateTimedOut}

// Write writes the coordinator's metrics in the Prometheus text format.
// Queue depths are asked of the bus (bounded by ctx) for every pool that
// had a job, and its reduce queue.
func (m *Coordinator) Write(ctx context.Context, w io.Writer, s Scrape) error {
	m.mu.Lock()
	pools := make([]*Pool, 0, len(m.pools))
	for _, p := range m.pools {
		pools = append(pools, p)
	}
	ended := make(map[wire.JobState]uint64, len(m.ended))
	for k, v := range m.ended {
		ended[k] = v
	}
	m.mu.Unlock()
	slices.SortFunc(pools, func(a, b *Pool) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})

	e := NewExpo(w)
	held := map[wire.JobState]int{}
	for _, j := range s.Jobs {
		held[j.Status.State]++
	}
	e.Family("skein_jobs", "gauge", "Jobs the coordinator holds, by state (ended jobs are held for --retention).")
	for _, st := range jobStates {
		e.Sample("skein_jobs", float64(held[st]), "state", string(st))
	}
	e.Family("skein_jobs_ended_total", "counter", "Jobs that ended on this coordinator, by final state.")
	for _, st := range jobStates[2:] {
		e.Sample("skein_jobs_ended_total", float64(ended[st]), "state", string(st))
	}
	counter := func(name, help string, get func(p *Pool) uint64) {
		e.Family(name, "counter", help)
		for _, p := range pools {
			e.Sample(name, float64(get(p)), "pool", p.name)
		}
	}
	counter("skein_tasks_published_total", "First attempts of tasks put on the pool's queue (maps, calls and reducers).", func(p *Pool) uint64 { return p.published.Load() })
	counter("skein_tasks_started_total", "Attempts that reported their start (tasks shorter than the runtime's started-after report none).", func(p *Pool) uint64 { return p.started.Load() })
	counter("skein_tasks_done_total", "Tasks recorded done.", func(p *Pool) uint64 { return p.done.Load() })
	counter("skein_tasks_failed_total", "Tasks recorded failed for good (retries exhausted or not retryable).", func(p *Pool) uint64 { return p.failed.Load() })
	counter("skein_tasks_retried_total", "Failed attempts the coordinator queued again.", func(p *Pool) uint64 { return p.retried.Load() })

	e.Family("skein_task_completion_latency_seconds", "histogram", "Time from a task's function ending (runtime clock) to the coordinator recording it.")
	for _, p := range pools {
		e.Histogram("skein_task_completion_latency_seconds", p.latency.Snapshot(), "pool", p.name)
	}
	e.Family("skein_task_duration_seconds", "histogram", "Time an attempt ran (started to finished, runtime clock), for attempts done, retried or failed.")
	for _, p := range pools {
		e.Histogram("skein_task_duration_seconds", p.duration.Snapshot(), "pool", p.name)
	}
	since := time.Now().Add(-m.ActiveWindow).UnixNano()
	e.Family("skein_runtimes_active", "gauge", "Runtimes that reported a task event of the pool within the active window (5m by default).")
	for _, p := range pools {
		e.Sample("skein_runtimes_active", float64(p.workers.count(since)), "pool", p.name)
	}

	if d, ok := s.Bus.(QueueDepther); ok && len(pools) > 0 {
		e.Family("skein_queue_depth", "gauge", "Messages on the pool's work queue (NATS: waiting or unacked; RabbitMQ: ready).")
		for _, p := range pools {
			for _, q := range []string{p.name, wire.ReducePool(p.name)} {
				n, err := d.QueueDepth(ctx, q)
				if err != nil {
					continue // a queue not made yet, or a bus unreachable now
				}
				e.Sample("skein_queue_depth", float64(n), "pool", q)
			}
		}
	}
	if c, ok := s.Bus.(ConnStats); ok {
		e.Family("skein_bus_connected", "gauge", "1 while the coordinator's bus connection is up.")
		e.Sample("skein_bus_connected", b2f(c.Connected()))
		e.Family("skein_bus_reconnects_total", "counter", "Reconnections of the coordinator's bus connection.")
		e.Sample("skein_bus_reconnects_total", float64(c.Reconnects()))
	}
	if s.Lease != nil {
		e.Family("skein_coordinator_lease_held", "gauge", "1 while the coordinator holds its lease in the namespace.")
		e.Sample("skein_coordinator_lease_held", b2f(s.Lease()))
	}
	return e.Flush()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves m's exposition, with what scrape returns at each request.
func (m *Coordinator) Handler(scrape func() Scrape) http.Handler {
	return Handler(func(ctx context.Context, w http.ResponseWriter) error { return m.Write(ctx, w, scrape()) })
}
