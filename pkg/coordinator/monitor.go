package coordinator

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/skeinrun/skein/pkg/telemetry"
	"github.com/skeinrun/skein/pkg/wire"
)

// Monitor modes of a job (JobSpec.Monitor).
const (
	MonitorEvents = "events" // completion from the runtimes' events (default)
	MonitorPoll   = "poll"   // completion from listing status objects in storage
)

// PollFunc watches a job's status objects in storage (pkg/pollmon over the
// installation's artifacts store): it lists them every interval and calls
// seen, from its own goroutine, for every map or call task whose status
// object appeared, with the time the listing noticed it. It returns nil
// once total distinct tasks were seen, or an error (ctx's when it ends).
type PollFunc func(ctx context.Context, job string, total int, interval time.Duration, seen func(task int, noticed time.Time)) error

// DefaultPollInterval is the polling interval of a poll-mode job that sets
// none (Lithops' default).
const DefaultPollInterval = 2 * time.Second

func checkMonitor(s *wire.JobSpec) error {
	switch s.Monitor {
	case "", MonitorEvents, MonitorPoll:
	default:
		return fmt.Errorf("monitor %q: want events or poll", s.Monitor)
	}
	if s.PollIntervalMS < 0 {
		return fmt.Errorf("poll_interval %dms: must not be negative", s.PollIntervalMS)
	}
	if s.PollIntervalMS > 0 && s.Monitor != MonitorPoll {
		return fmt.Errorf("poll_interval: only with monitor poll")
	}
	return nil
}

// monitorState is a job's telemetry and, in poll mode, what the poller has
// seen. The event loop owns the poll fields.
type monitorState struct {
	span  trace.Span
	trace map[string]string // Task.Trace: the job span's context
	obs   PoolObserver      // Config.Observer's for the job's pool; nil: none

	poll     bool
	polled   chan polled
	seen     []bool
	nSeen    int
	finished []int64 // poll mode: Event.Finished of done tasks
	pollErr  chan error
}

type polled struct {
	task    int
	noticed time.Time
}

func (j *job) tel() *telemetry.Telemetry {
	if j.replayEnd != nil {
		return quiet
	}
	return j.c.cfg.Telemetry
}

// startMonitoring starts the job span (under the submitter's context) and,
// in poll mode, the poller. It runs before the first task is published.
func (j *job) startMonitoring() error {
	ctx := telemetry.Extract(context.Background(), j.spec.Trace)
	ctx, j.mon.span = j.tel().StartJob(ctx, j.id, string(j.spec.Kind), j.n+j.groups)
	j.mon.trace = telemetry.Inject(ctx)
	if o := j.c.cfg.Observer; o != nil {
		j.mon.obs = o.Pool(j.spec.Pool)
	}
	if j.spec.Monitor != MonitorPoll {
		return nil
	}
	poll := j.c.cfg.Hooks.Poll
	if poll == nil {
		return fmt.Errorf("%w: monitor poll: this coordinator has no storage for status objects (configure SKEIN_STORAGE_*)", ErrInvalid)
	}
	every := time.Duration(j.spec.PollIntervalMS) * time.Millisecond
	if every <= 0 {
		every = DefaultPollInterval
	}
	j.mon.poll = true
	j.mon.polled = make(chan polled, 1024)
	j.mon.pollErr = make(chan error, 1)
	j.mon.seen = make([]bool, j.n)
	j.mon.finished = make([]int64, j.n)
	j.c.wg.Add(1)
	go func() {
		defer j.c.wg.Done()
		err := poll(j.ctx, j.id, j.n, every, func(task int, noticed time.Time) {
			select {
			case j.mon.polled <- polled{task, noticed}:
			case <-j.ctx.Done():
			}
		})
		if err != nil && j.ctx.Err() == nil {
			j.mon.pollErr <- err
		}
	}()
	return nil
}

// polledChan is nil (never ready) unless the job is in poll mode.
func (j *job) polledChan() <-chan polled { return j.mon.polled }

func (j *job) pollErrChan() <-chan error { return j.mon.pollErr }

// onPolled records a task the poller has seen; latency is from the
// function's end to the listing that noticed it.
func (j *job) onPolled(p polled) {
	if p.task < 0 || p.task >= j.n || j.mon.seen[p.task] {
		return
	}
	j.mon.seen[p.task] = true
	j.mon.nSeen++
	j.mu.Lock()
	defer j.mu.Unlock()
	if f := j.mon.finished[p.task]; f > 0 {
		j.recordLatency(p.noticed.UnixNano() - f)
	}
}

// recordLatency keeps a completion latency for the job's percentiles and
// the latency histogram. Called with j.mu held.
func (j *job) recordLatency(ns int64) {
	j.lat = append(j.lat, ns)
	j.tel().Metrics.Completed(context.Background(), time.Duration(ns))
}

// taskDone records a done map or call task's completion latency: now, or
// in poll mode when the poller sees its status object. Called with j.mu
// held.
func (j *job) taskDone(ev *wire.Event) {
	if ev.Finished <= 0 {
		j.tel().Metrics.Completed(context.Background(), 0)
		return
	}
	if !j.mon.poll {
		j.recordLatency(time.Now().UnixNano() - ev.Finished)
		return
	}
	if i := ev.Task; i >= 0 && i < j.n {
		j.mon.finished[i] = ev.Finished
	}
}

// reduceDone records a done reducer's completion latency (reducers are
// followed by their events in every mode). Called with j.mu held.
func (j *job) reduceDone(ev *wire.Event) {
	j.tel().Metrics.Completed(context.Background(), telemetry.Latency(ev.Finished, time.Now()))
}

// taskFailed counts a task failed for good.
func (j *job) taskFailed(ev *wire.Event) {
	j.tel().Metrics.Failed(context.Background(), telemetry.Latency(ev.Finished, time.Now()))
}

// pollComplete reports whether the poller (if any) has seen every task.
func (j *job) pollComplete() bool { return !j.mon.poll || j.mon.nSeen >= j.n }

// endMonitoring ends the job span.
func (j *job) endMonitoring(state wire.JobState, e *wire.TaskError) {
	var err error
	if state != wire.StateDone {
		err = fmt.Errorf("job %s", state)
		if e != nil {
			err = fmt.Errorf("job %s: %s", state, e.Error())
		}
	}
	telemetry.End(j.mon.span, err)
}
