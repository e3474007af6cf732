package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/telemetry"
	"github.com/skeinrun/skein/pkg/wire"
)

// Config configures a runtime.
type Config struct {
	// Pool is the queue the runtime pulls tasks from. Default "default".
	Pool string
	// Slots is how many tasks run at once. Default 1.
	Slots int
	// Prefetch, when set, fixes how many tasks are held beyond the
	// running ones: the runtime asks the bus for at most Slots+Prefetch
	// unsettled tasks. Zero means adaptive: the runtime sizes its window
	// from the tasks' durations and the broker's round trips (deep for
	// floods of short tasks, a spare per few slots for long ones; see
	// pacer). With MaxTasks set, zero means 2×Slots. Either way the
	// leases of tasks waiting for a slot are renewed as those of running
	// ones.
	Prefetch int
	// Lease is the queue's redelivery lease; a held or running task's
	// lease is renewed once Lease/3 has passed since it last started
	// (looked at every Lease/12). Default 30s.
	Lease time.Duration
	// MaxAttempts is how often the bus may deliver one task before the
	// runtime reports it lost. Default 5.
	MaxAttempts int
	// WorkerID names this runtime in events. Default host-pid.
	WorkerID string
	// StartedAfter: a "started" event is published only for tasks still
	// running after this long, so that short tasks cost one event. Zero
	// means 20ms; negative means always.
	StartedAfter time.Duration
	// Transient marks a pool that serves one job (see bus.QueueOptions).
	Transient bool
	// Queues chooses which of the pool's queues the runtime pulls: its
	// tasks and its reducers (the default), or one of the two (an
	// OpenWhisk activation dispatched for a reducer pulls only reducers,
	// so that it is not spent on maps and a map activation never takes a
	// reducer it would have to hand back when its budget ends).
	Queues Queues
	// MaxTasks stops the runtime after this many tasks (0 = no limit);
	// Idle stops it after this long without a task (0 = never). Used by
	// one-shot and action modes.
	MaxTasks int
	Idle     time.Duration

	Registry *fn.Registry
	// Verifier, when set, admits only tasks and reducer feeds the
	// coordinator signed (runtime --verify-key); others are terminated
	// with a logged reason.
	Verifier Verifier
	// Hosts run non-Go references by scheme ("py", "cmd").
	Hosts map[string]fn.Host
	// FuncEnv is the base environment Go functions see through
	// fn.Args.Environ (nil: fn.BaseEnv(os.Environ(), nil)); hosts have
	// their own (fnproc.Setup).
	FuncEnv []string
	// ModuleCache is where Prepare unpacks shipped modules ("": the data
	// path's default); the user functions run as must be able to read it.
	ModuleCache string
	// Prepare, when set, is called before a task runs to resolve what
	// the task needs locally (storage inputs, shipped modules).
	Prepare func(ctx context.Context, t *wire.Task, c *fn.Call) error
	// Finish, when set, may replace a large result by a storage
	// reference before the event is published. It runs in the task's
	// slot once the function has returned, under the runtime's context.
	Finish func(ctx context.Context, t *wire.Task, ev *wire.Event) error
	// Resolve loads a value stored by reference (reducer inputs).
	Resolve func(ctx context.Context, ref string) (wire.Value, error)
	// PollStatus, when set, writes the status object of a poll-mode task
	// (Task.Monitor "poll") once its done event is on the bus, before the
	// task is acked: the storage-polling baseline (pkg/pollmon).
	PollStatus func(ctx context.Context, t *wire.Task, ev *wire.Event) error
	// Telemetry records a span per task attempt; nil means off.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
}

// Queues chooses which of a pool's queues a runtime pulls.
type Queues string

const (
	QueuesAll    Queues = ""       // the pool's tasks and its reducers
	QueuesTasks  Queues = "tasks"  // map and call tasks only
	QueuesReduce Queues = "reduce" // reducers only
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Pool: "default", Slots: 1, Lease: 30 * time.Second, MaxAttempts: 5}
}

func (c *Config) setDefaults() {
	if c.Pool == "" {
		c.Pool = "default"
	}
	if c.Slots == 0 {
		c.Slots = 1
	}
	if c.Prefetch == 0 && c.MaxTasks > 0 {
		c.Prefetch = 2 * c.Slots
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.StartedAfter == 0 {
		c.StartedAfter = 20 * time.Millisecond
	}
	if c.WorkerID == "" {
		h, _ := os.Hostname()
		c.WorkerID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.Registry == nil {
		c.Registry = fn.Builtins()
	}
	if c.FuncEnv == nil {
		c.FuncEnv = fn.BaseEnv(os.Environ(), nil)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Telemetry == nil {
		c.Telemetry = telemetry.Off()
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Slots < 0 {
		errs = append(errs, fmt.Errorf("slots %d: must be positive", c.Slots))
	}
	if c.Prefetch < 0 {
		errs = append(errs, fmt.Errorf("prefetch %d: must be positive", c.Prefetch))
	}
	if c.Lease < 0 {
		errs = append(errs, fmt.Errorf("lease %v: must be positive", c.Lease))
	} else if c.Lease > 0 && c.Lease < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("lease %v: must be at least 100ms", c.Lease))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("max attempts %d: must be positive", c.MaxAttempts))
	}
	if c.Queues != QueuesAll && c.Queues != QueuesTasks && c.Queues != QueuesReduce {
		errs = append(errs, fmt.Errorf("queues %q: want \"\", %q or %q", c.Queues, QueuesTasks, QueuesReduce))
	}
	if c.MaxTasks < 0 {
		errs = append(errs, fmt.Errorf("max tasks %d: must not be negative", c.MaxTasks))
	}
	return errors.Join(errs...)
}

// Runtime pulls tasks from a pool's queue, runs them, and reports events.
type Runtime struct {
	bus bus.Bus
	cfg Config
	log *slog.Logger

	cancelled sync.Map               // job id -> time cancelled
	held      taskList[*heldTask]    // taken from the bus, not yet running
	running   taskList[*runningTask] // in the order they started
	ran       atomic.Int64
	pending   sync.WaitGroup // event publications and reducers in flight
	reducer   *Reducer
	pacer     *pacer        // sizes the window; nil with a fixed Prefetch
	reducers  chan struct{} // bounds concurrent reducers
	outcomes  chan outcome  // finished attempts for the publishers
	pipes     sync.Map      // slot -> *slotPipe (pipeline.go)
}

// heldTask is a delivery taken from the bus and waiting for a slot (or a
// reducer's turn). The heartbeat renews its lease as it renews a running
// task's, so that a task is never redelivered for waiting here.
type heldTask struct {
	d    bus.Delivery
	link links[*heldTask] // in r.held

	mu      sync.Mutex
	renewed time.Time // when its lease last started or was renewed
}

func (h *heldTask) links() *links[*heldTask] { return &h.link }

type runningTask struct {
	job     string
	cancel  context.CancelFunc
	task    *wire.Task
	d       bus.Delivery
	started time.Time
	link    links[*runningTask] // in r.running

	mu        sync.Mutex // guards the fields below
	finished  bool
	announced bool
	renewed   time.Time
}

func (rt *runningTask) links() *links[*runningTask] { return &rt.link }

// New builds a runtime on b.
func New(b bus.Bus, cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	cfg.setDefaults()
	r := &Runtime{bus: b, cfg: cfg, log: cfg.Logger.With("worker", cfg.WorkerID), reducers: make(chan struct{}, 64)}
	if cfg.Prefetch == 0 {
		r.pacer = newPacer(cfg.Slots)
		r.outcomes = make(chan outcome, maxWindow+64)
	} else {
		r.outcomes = make(chan outcome, 4*cfg.Prefetch+64)
	}
	r.reducer = &Reducer{Bus: b, Registry: cfg.Registry, Hosts: cfg.Hosts, Resolve: cfg.Resolve, Prepare: cfg.Prepare, FuncEnv: cfg.FuncEnv,
		Verifier: cfg.Verifier, Logger: r.log}
	return r, nil
}

// publishers is how many goroutines publish events at once.
const publishers = 8

// Summary tells what a Run did.
type Summary struct {
	Tasks  int64  `json:"tasks"`
	Worker string `json:"worker"`
}

// Run pulls and runs tasks until ctx is done, or MaxTasks ran, or the
// queue was idle for Idle. Tasks that are running when ctx ends are
// cancelled and given back to the queue at once (Nak), for another
// runtime. A reducer already taken is not stopped by MaxTasks or Idle:
// those end the pulling, and Run returns once its reducers are done (or
// ctx ends), so that a streaming reducer is never cut off by an
// activation's task budget.
func (r *Runtime) Run(parent context.Context) (Summary, error) {
	// ctx lives until Run returns: the cancel listener, the heartbeat
	// (which renews running reducers' leases) and the reducers use it.
	// mctx ends the pulling of map tasks (stop: MaxTasks, Idle).
	ctx, end := context.WithCancel(parent)
	defer end()
	var loops sync.WaitGroup
	defer loops.Wait()
	defer end()
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	loops.Add(2)
	go func() { defer loops.Done(); r.listenCancels(ctx) }()
	go func() { defer loops.Done(); r.heartbeat(ctx) }()
	var pubs sync.WaitGroup
	for i := 0; i < publishers; i++ {
		pubs.Add(1)
		go func() { defer pubs.Done(); r.publisher() }()
	}
	defer func() {
		close(r.outcomes)
		pubs.Wait()
	}()
	opts := bus.QueueOptions{
		Window:      bus.NewWindow(r.cfg.Slots + r.cfg.Prefetch),
		Lease:       r.cfg.Lease,
		MaxAttempts: r.cfg.MaxAttempts,
		Transient:   r.cfg.Transient,
		Limit:       r.cfg.MaxTasks,
	}
	if r.pacer != nil {
		opts.Window = r.pacer.win
	}
	if r.cfg.MaxTasks > 0 {
		opts.Prefetch = r.cfg.Prefetch
	}
	var deliveries <-chan *heldTask
	if r.cfg.Queues != QueuesReduce {
		taken, err := r.consume(mctx, r.cfg.Pool, opts)
		if err != nil {
			return Summary{}, fmt.Errorf("runtime: consume pool %s: %w", r.cfg.Pool, err)
		}
		deliveries = r.hold(mctx, taken)
	} else {
		none := make(chan *heldTask)
		close(none)
		deliveries = none
	}
	var wg sync.WaitGroup
	if !r.cfg.Transient && r.cfg.Queues != QueuesTasks {
		// Reduce tasks have a queue of their own, so that a reducer starts
		// with the first map result even while maps are queued. Its
		// consumer outlives the pulling of maps until the reducers taken
		// are done: on some buses (RabbitMQ) a delivery dies with its
		// consumer.
		rctx, rstop := context.WithCancel(ctx)
		defer rstop()
		rtaken, err := r.consume(rctx, wire.ReducePool(r.cfg.Pool), bus.QueueOptions{
			Prefetch: 4, Lease: r.cfg.Lease, MaxAttempts: r.cfg.MaxAttempts, Limit: r.cfg.MaxTasks,
		})
		if err != nil {
			return Summary{}, fmt.Errorf("runtime: consume pool %s: %w", wire.ReducePool(r.cfg.Pool), err)
		}
		reduces := r.hold(rctx, rtaken)
		var (
			mu       sync.Mutex
			reducing int
			idle     = sync.NewCond(&mu)
		)
		done := func() {
			mu.Lock()
			reducing--
			idle.Broadcast()
			mu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for h := range reduces {
				mu.Lock()
				if mctx.Err() != nil {
					// Pulling has stopped: a reducer taken now goes back
					// at once, for a runtime that still pulls.
					mu.Unlock()
					r.held.remove(h)
					_ = h.d.Nak(context.Background(), 0)
					continue
				}
				reducing++
				mu.Unlock()
				r.handle(ctx, r.cfg.Slots+k%64, h, done)
				k++
			}
			if r.cfg.Queues == QueuesReduce {
				stop() // its MaxTasks reducers were delivered
			}
		}()
		// Once the pulling stops, the reduce consumer stops when the
		// reducers it took are done.
		loops.Add(1)
		go func() {
			defer loops.Done()
			<-mctx.Done()
			mu.Lock()
			for reducing > 0 {
				idle.Wait()
			}
			mu.Unlock()
			rstop()
		}()
	}
	r.log.Info("runtime started", "pool", r.cfg.Pool, "slots", r.cfg.Slots)
	var started atomic.Int64
	var lastTask atomic.Int64
	lastTask.Store(time.Now().UnixNano())
	for i := 0; i < r.cfg.Slots; i++ {
		wg.Add(1)
		go func(slot int) {
			defer wg.Done()
			for h := range deliveries {
				if r.cfg.MaxTasks > 0 && started.Add(1) > int64(r.cfg.MaxTasks) {
					r.held.remove(h)
					_ = h.d.Nak(context.Background(), 0)
					stop()
					continue
				}
				r.handle(mctx, slot, h, nil)
				if r.cfg.Idle > 0 {
					lastTask.Store(time.Now().UnixNano())
				}
				if r.cfg.MaxTasks > 0 && r.ran.Load() >= int64(r.cfg.MaxTasks) {
					stop()
				}
			}
		}(i)
	}
	if r.cfg.Idle > 0 {
		loops.Add(1)
		go func() {
			defer loops.Done()
			t := time.NewTicker(r.cfg.Idle / 4)
			defer t.Stop()
			for {
				select {
				case <-mctx.Done():
					return
				case <-t.C:
					if time.Since(time.Unix(0, lastTask.Load())) > r.cfg.Idle && r.inFlight() == 0 {
						stop()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	r.closePipes()
	r.pending.Wait()
	r.log.Info("runtime stopped", "tasks", r.ran.Load())
	return Summary{Tasks: r.ran.Load(), Worker: r.cfg.WorkerID}, nil
}

func (r *Runtime) inFlight() int {
	return r.running.len() + r.held.len()
}

// hold takes every delivery off the bus channel as soon as it arrives
// and keeps it among the held tasks, whose leases the heartbeat renews,
// until a slot takes it from the returned channel. The bus bounds how
// many it hands over (the window), so the queue here stays that short.
// When ctx ends, the tasks still waiting go back to the queue at once.
func (r *Runtime) hold(ctx context.Context, in <-chan bus.Delivery) <-chan *heldTask {
	out := make(chan *heldTask)
	r.pending.Add(1)
	go func() {
		defer r.pending.Done()
		defer close(out)
		var q []*heldTask
		// The bus may close in while tasks still wait here (a consumer
		// with a Limit ends once it has delivered them all): they are
		// still handed to the slots, until ctx ends.
		for in != nil || (len(q) > 0 && ctx.Err() == nil) {
			var send chan *heldTask
			var first *heldTask
			if len(q) > 0 && ctx.Err() == nil {
				send, first = out, q[0]
			}
			select {
			case <-ctx.Done():
				if in == nil {
					continue
				}
				// Keep taking what the bus still hands over, to give it
				// back below.
				d, ok := <-in
				if !ok {
					in = nil
					continue
				}
				h := &heldTask{d: d, renewed: time.Now()}
				r.held.add(h)
				q = append(q, h)
			case d, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				if d.Attempt() > 1 && r.pacer != nil {
					r.pacer.redelivered()
				}
				h := &heldTask{d: d, renewed: time.Now()}
				r.held.add(h)
				q = append(q, h)
			case send <- first:
				q[0] = nil
				q = q[1:]
			}
		}
		for _, h := range q {
			r.held.remove(h)
			_ = h.d.Nak(context.Background(), 0)
		}
	}()
	return out
}

func (r *Runtime) listenCancels(ctx context.Context) {
	ch, err := r.bus.Listen(ctx, "cancel")
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("runtime: cannot listen for cancels", "err", err)
		}
		return
	}
	for m := range ch {
		var c wire.Cancel
		if err := wire.Decode(m.Data, wire.KindCancel, &c); err != nil {
			r.log.Warn("runtime: malformed cancel notice", "err", err)
			continue
		}
		r.cancelled.Store(c.Job, time.Now())
		r.running.each(func(rt *runningTask) {
			if rt.job == c.Job {
				rt.cancel()
			}
		})
	}
}

// handle runs one delivery to its settlement. done, when set, is called
// when it is settled: a reducer's after it ran (handle returns at once).
func (r *Runtime) handle(ctx context.Context, slot int, h *heldTask, done func()) {
	d := h.d
	ran, async := false, false
	defer func() {
		if !ran {
			r.held.remove(h)
		}
		if !async && done != nil {
			done()
		}
	}()
	if bus.Revoked(d) {
		// It waited here while its consumer's connection dropped (the
		// broker has put it back on the queue, for this runtime or
		// another to take again: running it would run it twice), or its
		// task stream was made again (NATS: the message is gone with the
		// old stream). The settle fails without reaching the broker, and
		// frees the room the delivery held in its consumer's window.
		r.log.Info("runtime: dropping a task the broker took back (its consumer's connection dropped, or its stream was made again)", "subject", d.Message().Subject)
		_ = d.Ack(ctx)
		return
	}
	if r.cfg.Verifier != nil {
		if err := r.cfg.Verifier.Verify(d.Message()); err != nil {
			r.log.Error("runtime: refusing a task the coordinator did not sign", "err", err, "subject", d.Message().Subject)
			_ = d.Term(ctx, "task refused: "+err.Error())
			return
		}
	}
	var t wire.Task
	if err := wire.Decode(d.Message().Data, wire.KindTask, &t); err != nil {
		r.log.Error("runtime: rejecting malformed task", "err", err, "subject", d.Message().Subject)
		_ = d.Term(ctx, "malformed task: "+err.Error())
		return
	}
	if _, ok := r.cancelled.Load(t.Job); ok {
		_ = d.Ack(ctx)
		return
	}
	if d.Attempt() > r.cfg.MaxAttempts {
		ev := r.event(&t, d, wire.EventFailed)
		ev.Error = &wire.TaskError{Kind: wire.ErrLost, Retryable: false,
			Message: fmt.Sprintf("task delivered %d times without finishing (its runtimes crashed or lost their connection); giving up", d.Attempt()-1)}
		r.settle(ctx, d, &t, ev, true)
		return
	}
	if t.Kind == wire.TaskReduce {
		// A reducer mostly waits for its feed: run it beside the slots so
		// that it does not take a map's place.
		select {
		case r.reducers <- struct{}{}:
		case <-ctx.Done():
			return
		}
		ran, async = true, true
		r.pending.Add(1)
		go func() {
			defer r.pending.Done()
			defer func() { <-r.reducers }()
			if done != nil {
				defer done()
			}
			r.execute(ctx, slot, h, &t)
		}()
		return
	}
	ran = true
	r.run(ctx, slot, h, &t)
}

func (r *Runtime) event(t *wire.Task, d bus.Delivery, typ wire.EventType) *wire.Event {
	return &wire.Event{Job: t.Job, Task: t.Index, Kind: t.Kind, Attempt: t.Attempt, Delivery: d.Attempt(),
		Type: typ, Worker: r.cfg.WorkerID, Queued: t.Queued, Trace: t.Trace}
}

func (r *Runtime) execute(parent context.Context, slot int, h *heldTask, t *wire.Task) {
	d := h.d
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	if t.Deadline > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, time.Unix(0, t.Deadline))
		defer c2()
	}
	if t.TimeoutMS > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, time.Duration(t.TimeoutMS)*time.Millisecond)
		defer c2()
	}
	ctx, span := r.cfg.Telemetry.StartTask(telemetry.Extract(ctx, t.Trace), t.Job, t.Index, t.Attempt, string(t.Kind), r.cfg.WorkerID)
	started := time.Now()
	h.mu.Lock()
	rt := &runningTask{job: t.Job, cancel: cancel, task: t, d: d, started: started, renewed: h.renewed}
	h.mu.Unlock()
	r.running.add(rt)
	r.held.remove(h)

	var logBuf boundedBuffer
	var arrivals []int64
	var peakKB int64
	result, err := r.call(ctx, slot, t, &logBuf, &arrivals, &peakKB)
	finished := time.Now()
	telemetry.End(span, err)
	// The task stays among the running ones, its lease renewed, until its
	// event is safe and it is settled (publishGroup).
	rt.mu.Lock()
	rt.finished = true
	rt.mu.Unlock()

	if parent.Err() != nil && err != nil {
		r.handBack(rt)
		return
	}
	ev := r.event(t, d, wire.EventDone)
	ev.Started, ev.Finished, ev.PeakKB = started.UnixNano(), finished.UnixNano(), peakKB
	ev.Log = logBuf.String()
	ev.Arrivals = arrivals
	if err != nil {
		ev.Type = wire.EventFailed
		ev.Error = fn.Classify(err)
		if _, ok := r.cancelled.Load(t.Job); ok {
			ev.Error = &wire.TaskError{Kind: wire.ErrCancelled, Message: "job cancelled"}
		} else if ev.Error.Kind == wire.ErrCancelled && ctx.Err() == context.DeadlineExceeded {
			ev.Error = &wire.TaskError{Kind: wire.ErrTimeout, Message: "function ran past its deadline", Retryable: true}
		}
	} else {
		ev.Result = result
		// A large result goes to storage here, in the task's slot (the
		// task keeps its lease meanwhile): an upload, or a storage outage
		// it rides out, holds up this task alone, not the events of the
		// others.
		if r.cfg.Finish != nil {
			if ferr := r.cfg.Finish(parent, t, ev); ferr != nil {
				if parent.Err() != nil {
					r.handBack(rt)
					return
				}
				ev.Type, ev.Result = wire.EventFailed, nil
				ev.Error = &wire.TaskError{Kind: wire.ErrInternal, Message: "storing the result: " + ferr.Error(), Retryable: true}
			}
		}
	}
	r.ran.Add(1)
	r.settleRunning(rt, ev)
}

// handBack gives a running task back to its queue at once, for another
// runtime, not after its lease: the runtime is stopping (cancelled, or its
// activation's deadline came) and the task did not finish here.
func (r *Runtime) handBack(rt *runningTask) {
	r.running.remove(rt)
	nctx, ncancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = rt.d.Nak(nctx, 0)
	ncancel()
}

// heartbeat is the runtime's one timer loop: it renews the lease of tasks
// held (running, or waiting for a slot) longer than a third of it, and
// announces (a "started" event) tasks still running after StartedAfter.
// Short tasks cost no timer, and a tick walks only the running tasks old
// enough to announce (the oldest first); the lease renewals look at every
// task only each Lease/12, so that a lease is renewed at most 5/12 of it
// after it last started.
func (r *Runtime) heartbeat(ctx context.Context) {
	every := r.cfg.StartedAfter
	if every <= 0 || every > r.cfg.Lease/3 {
		every = r.cfg.Lease / 3
	}
	if every > 10*time.Millisecond {
		every = every / 2
	}
	renewEvery := max(r.cfg.Lease/12, every)
	tick := time.NewTicker(every)
	defer tick.Stop()
	renewScan := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.running.oldest(func(rt *runningTask) bool {
				return now.Sub(rt.started) >= r.cfg.StartedAfter
			}, func(rt *runningTask) {
				rt.mu.Lock()
				if !rt.finished && !rt.announced {
					rt.announced = true
					r.publishStarted(ctx, rt.task, rt.d, rt.started)
				}
				rt.mu.Unlock()
			})
			if now.Sub(renewScan) < renewEvery {
				continue
			}
			renewScan = now
			r.running.each(func(rt *runningTask) {
				rt.mu.Lock()
				if now.Sub(rt.renewed) >= r.cfg.Lease/3 {
					rt.renewed = now
					if err := rt.d.InProgress(ctx); err != nil && !errors.Is(err, bus.ErrSettled) {
						r.log.Warn("runtime: lease renewal failed", "job", rt.job, "task", rt.task.Index, "err", err)
					}
				}
				rt.mu.Unlock()
			})
			r.held.each(func(h *heldTask) {
				h.mu.Lock()
				due := now.Sub(h.renewed) >= r.cfg.Lease/3
				if due {
					h.renewed = now
				}
				h.mu.Unlock()
				if due {
					if err := h.d.InProgress(ctx); err != nil && !errors.Is(err, bus.ErrSettled) && ctx.Err() == nil {
						r.log.Warn("runtime: lease renewal of a waiting task failed", "err", err)
					}
				}
			})
		}
	}
}

// outcome is a finished attempt waiting to be published and settled.
type outcome struct {
	d    bus.Delivery
	t    *wire.Task
	ev   *wire.Event
	term bool
	rt   *runningTask // nil for a task that did not run
}

// settle hands ev to the publishers; the delivery is acked only once the
// event is safe on the bus.
func (r *Runtime) settle(ctx context.Context, d bus.Delivery, t *wire.Task, ev *wire.Event, term bool) {
	r.pending.Add(1)
	r.outcomes <- outcome{d: d, t: t, ev: ev, term: term}
}

// settleRunning is settle for a task that ran: the heartbeat keeps
// renewing its lease until it is settled, so that a slow publication
// does not get it redelivered and run twice.
func (r *Runtime) settleRunning(rt *runningTask, ev *wire.Event) {
	r.pending.Add(1)
	r.outcomes <- outcome{d: rt.d, t: rt.task, ev: ev, rt: rt}
}

// publisher takes outcomes, batches those already waiting per job into
// one event message, publishes it, then acks the deliveries. Batching
// only takes what is there: an isolated task waits for nothing.
func (r *Runtime) publisher() {
	const maxBatch = 128
	batch := make([]outcome, 0, maxBatch)
	for o := range r.outcomes {
		batch = append(batch[:0], o)
	drain:
		for len(batch) < maxBatch {
			select {
			case o2, ok := <-r.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o2)
			default:
				break drain
			}
		}
		r.publishBatch(batch)
	}
}

func (r *Runtime) publishBatch(batch []outcome) {
	bctx := context.Background()
	// Group by job, keeping order.
	byJob := make(map[string][]outcome, 1)
	var jobs []string
	for _, o := range batch {
		if _, ok := byJob[o.t.Job]; !ok {
			jobs = append(jobs, o.t.Job)
		}
		byJob[o.t.Job] = append(byJob[o.t.Job], o)
	}
	for _, job := range jobs {
		r.publishGroup(bctx, job, byJob[job])
	}
}

func (r *Runtime) publishGroup(ctx context.Context, job string, group []outcome) {
	evs := make([]wire.Event, len(group))
	for i, o := range group {
		evs[i] = *o.ev
	}
	data, err := wire.Encode(wire.KindEvents, wire.Events{Events: evs})
	if err == nil {
		err = r.publish(ctx, job, data)
	}
	if errors.Is(err, bus.ErrTooLarge) {
		if len(group) > 1 {
			half := len(group) / 2
			r.publishGroup(ctx, job, group[:half])
			r.publishGroup(ctx, job, group[half:])
			return
		}
		o := group[0]
		if o.ev.Type == wire.EventDone {
			o.ev.Type, o.ev.Result = wire.EventFailed, nil
			o.ev.Error = &wire.TaskError{Kind: wire.ErrUser, Message: "result too large for the bus; configure storage so that large results travel by reference"}
			r.publishGroup(ctx, job, group)
			return
		}
	}
	if err == nil && r.cfg.PollStatus != nil {
		for _, o := range group {
			if o.t.Monitor == "poll" && o.ev.Type == wire.EventDone {
				if perr := r.cfg.PollStatus(ctx, o.t, o.ev); perr != nil {
					r.log.Warn("runtime: writing the poll-mode status object", "job", job, "task", o.t.Index, "err", perr)
				}
			}
		}
	}
	r.settleGroup(ctx, job, group, err)
	for _, o := range group {
		if o.rt != nil {
			r.running.remove(o.rt)
		}
		r.pending.Done()
	}
}

// settleGroup settles the deliveries of a group whose event message was
// published (or failed: published). A bus that acks a batch at once gets
// the group's acks together; the rest, and any ack of the batch that
// failed, are settled one by one, at once: each settle waits for the
// broker's confirmation, and one after another they would add a round
// trip per task.
func (r *Runtime) settleGroup(ctx context.Context, job string, group []outcome, published error) {
	rest := group
	if ba, ok := r.bus.(bus.BatchAcker); ok && published == nil {
		rest = nil
		var acks []outcome
		for _, o := range group {
			if o.term {
				rest = append(rest, o)
			} else {
				acks = append(acks, o)
			}
		}
		if len(acks) > 0 {
			ds := make([]bus.Delivery, len(acks))
			for i, o := range acks {
				ds[i] = o.d
			}
			ackStart := time.Now()
			errs := ba.AckAll(ctx, ds)
			var ts []settledTask
			if r.pacer != nil {
				ts = make([]settledTask, 0, len(acks))
			}
			now := time.Now()
			for i, o := range acks {
				switch {
				case errs[i] == nil:
					if t, ok := r.observe(o, ackStart, now); ok {
						ts = append(ts, t)
					}
				case errors.Is(errs[i], bus.ErrSettled):
					r.log.Warn("runtime: settling task", "job", job, "task", o.t.Index, "err", errs[i])
				default:
					rest = append(rest, o) // tried again one by one
				}
			}
			if r.pacer != nil {
				r.pacer.settledMany(ts)
			}
		}
	}
	var wg sync.WaitGroup
	for _, o := range rest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.settleOne(ctx, job, o, published)
		}()
	}
	wg.Wait()
}

// settleOne acks (or terms) a delivery whose event is safe, retrying a
// failed settle a few times (an unsettled delivery runs again after its
// lease), or naks it when its event could not be published.
func (r *Runtime) settleOne(ctx context.Context, job string, o outcome, published error) {
	if published != nil {
		// Not safe: leave the task to be redelivered.
		r.log.Error("runtime: publishing event failed; task will be redelivered", "job", job, "task", o.t.Index, "err", published)
		_ = o.d.Nak(ctx, time.Second)
		return
	}
	ackStart := time.Now()
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Tries: 3}, func() error {
		var err error
		if o.term {
			err = o.d.Term(ctx, "delivered too often")
		} else {
			err = o.d.Ack(ctx)
		}
		if errors.Is(err, bus.ErrSettled) {
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil {
		r.log.Warn("runtime: settling task", "job", job, "task", o.t.Index, "err", err)
		return
	}
	r.acked(o, ackStart)
}

// acked tells the pacer how long o's task ran, waited for its event and
// waited for its ack, begun at ackStart.
func (r *Runtime) acked(o outcome, ackStart time.Time) {
	if r.pacer == nil {
		return
	}
	if t, ok := r.observe(o, ackStart, time.Now()); ok {
		r.pacer.settled(t.run, t.settle, t.ack)
	}
}

// observe is what the pacer learns of o, acked at now after an ack begun
// at ackStart: nothing for a task that did not run.
func (r *Runtime) observe(o outcome, ackStart, now time.Time) (settledTask, bool) {
	if o.rt == nil || o.ev.Finished <= 0 {
		return settledTask{}, false
	}
	finished := time.Unix(0, o.ev.Finished)
	return settledTask{run: finished.Sub(o.rt.started), settle: now.Sub(finished), ack: now.Sub(ackStart)}, true
}

// publish stores an event message, retrying a few times (about 50 s in
// all) while the broker is away; the tasks it settles keep their leases
// meanwhile.
func (r *Runtime) publish(ctx context.Context, job string, data []byte) error {
	return retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Tries: 5}, func() error {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := r.bus.Publish(pctx, EventSubject(job), bus.Message{Data: data})
		if errors.Is(err, bus.ErrTooLarge) {
			return retry.Permanent(err)
		}
		return err
	})
}

func (r *Runtime) publishStarted(ctx context.Context, t *wire.Task, d bus.Delivery, started time.Time) {
	ev := r.event(t, d, wire.EventStarted)
	ev.Started = started.UnixNano()
	data, err := wire.Encode(wire.KindEvents, wire.Events{Events: []wire.Event{*ev}})
	if err == nil {
		err = r.bus.Publish(ctx, EventSubject(t.Job), bus.Message{Data: data})
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("runtime: started event", "job", t.Job, "task", t.Index, "err", err)
	}
}

// call resolves the task's function and runs it, turning panics into
// errors.
func (r *Runtime) call(ctx context.Context, slot int, t *wire.Task, logw *boundedBuffer, arrivals *[]int64, peakKB *int64) (res wire.Value, err error) {
	if t.Kind == wire.TaskReduce {
		defer func() {
			if p := recover(); p != nil {
				err = &wire.TaskError{Kind: wire.ErrPanic, Message: fmt.Sprint(p), Stack: string(debug.Stack()), Retryable: true}
			}
		}()
		return r.reducer.Reduce(ctx, t, slot, logw, arrivals)
	}
	ref, err := fn.ParseRef(t.Function)
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrUnknownFn, Message: err.Error()}
	}
	c := &fn.Call{Ref: ref.Name, Slot: slot, Job: t.Job, Task: t.Index, Args: t.Args, Kwargs: t.Kwargs, Env: t.Env, MemoryMB: t.MemoryMB, Log: logw}
	if r.cfg.Prepare != nil {
		if err := r.cfg.Prepare(ctx, t, c); err != nil {
			return nil, err
		}
	}
	if c.Obj != nil {
		if cl, ok := c.Obj.Body.(io.Closer); ok {
			defer cl.Close()
		}
	}
	defer func() {
		if p := recover(); p != nil {
			err = &wire.TaskError{Kind: wire.ErrPanic, Message: fmt.Sprint(p), Stack: string(debug.Stack()), Retryable: true}
		}
	}()
	if ref.Scheme != "go" {
		h, ok := r.cfg.Hosts[ref.Scheme]
		if !ok {
			return nil, &wire.TaskError{Kind: wire.ErrUnknownFn, Message: fmt.Sprintf("this runtime cannot run %s functions (%s)", ref.Scheme, t.Function)}
		}
		res, err := h.Call(ctx, c)
		*peakKB = c.PeakKB
		return res, err
	}
	spec, ok := r.cfg.Registry.Lookup(ref.Name)
	if !ok {
		return nil, &wire.TaskError{Kind: wire.ErrUnknownFn,
			Message: fmt.Sprintf("unknown function %q (this runtime has: %s)", ref.Name, strings.Join(r.cfg.Registry.Names(), ", "))}
	}
	if spec.Run == nil {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: fmt.Sprintf("function %q is a reducer and cannot be called directly", ref.Name)}
	}
	args, err := spec.Bind(c.Args, c.Kwargs)
	if err != nil {
		return nil, err
	}
	args.Env, args.Base, args.Obj, args.Log = c.Env, r.cfg.FuncEnv, c.Obj, logw
	out, err := spec.Run(ctx, args)
	if err != nil {
		return nil, err
	}
	return marshalResult(out)
}

func marshalResult(v any) (wire.Value, error) {
	if v == nil {
		return wire.Value("null"), nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		if raw == nil {
			return wire.Value("null"), nil
		}
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrUser, Message: "result is not JSON-encodable: " + err.Error()}
	}
	return b, nil
}

// EventSubject is the stream subject of a job's task events.
func EventSubject(job string) string { return wire.TaskEvents(job) }

const maxLog = 16 << 10

// boundedBuffer keeps the first maxLog bytes of a function's output.
type boundedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxLog - b.buf.Len(); room < len(p) {
		b.truncated = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return b.buf.String() + "\n[output truncated]"
	}
	return b.buf.String()
}

// consume opens a queue, retrying a few times: a broker may refuse the
// first declaration of a queue that several runtimes create at once
// (RabbitMQ answers two concurrent quorum-queue declarations with an
// internal error).
func (r *Runtime) consume(ctx context.Context, queue string, o bus.QueueOptions) (<-chan bus.Delivery, error) {
	return retry.Value(ctx, retry.Policy{Initial: 100 * time.Millisecond, Tries: 6, OnRetry: func(attempt int, err error, _ time.Duration) {
		if ctx.Err() == nil {
			r.log.Warn("runtime: opening the queue failed; retrying", "queue", queue, "attempt", attempt, "err", err)
		}
	}}, func() (<-chan bus.Delivery, error) {
		ch, err := r.bus.Consume(ctx, queue, o)
		if err != nil && ctx.Err() != nil {
			return nil, retry.Permanent(ctx.Err())
		}
		return ch, err
	})
}
