package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/wire"
)

type endRequest struct {
	state wire.JobState
	err   *wire.TaskError
	task  int
}

// job is one job's state. The event loop (run) is its only writer; mu
// guards what snapshot and results read from other goroutines.
type job struct {
	c    *Coordinator
	spec *wire.JobSpec
	id   string
	n    int // map (or call) tasks
	jev  progressEvents

	// A task's input: inputs[i] (a call, or iterdata expanded over
	// storage), else made from elems (the plain rules, lazily: input).
	inputs   []Input
	elems    *elements
	extra    map[string]wire.Value
	objs     []*wire.Object
	deadline time.Time

	// Reduce groups (mapreduce only).
	groups        int
	groupOf       []int32 // map task -> group; nil: one group
	groupSize     []int
	groupBase     []int // smallest map index of each group
	groupFed      []int
	reducerQueued []bool
	eosSent       []bool
	feedBuf       [][]wire.FeedItem
	reducers      attempts
	rResults      []wire.Value
	feeds         chan wire.Feed

	mu     sync.Mutex
	status wire.JobStatus
	// mapsDone counts the map (or call) tasks done (status.Done counts
	// reducers too): what a barrier reduce and the publishing's backlog
	// (admit) wait for.
	mapsDone int
	maps     attempts // the map (or call) tasks
	results  *resultStore
	lat      []int64
	ended    time.Time
	mon      monitorState // telemetry, poll mode (monitor.go)

	// publishers counts the goroutines that may still put tasks of this
	// job on a queue (publishAll, republish, enqueue); the end-of-job
	// purge waits for them, so that no task is published after it.
	publishers sync.WaitGroup

	// A job picked up again by a restarted coordinator: its state comes
	// from replaying its events; wasPublished says whether all of its
	// tasks had reached the queue.
	recovered, wasPublished bool
	// wasQueued is how many of a recovered job's first tasks the job log
	// records as queued (their first attempts need no publishing again).
	wasQueued int
	lastEvent atomic.Int64 // unix ns of the last event handled
	// progress (of one) wakes a publishing that waits for the backlog to
	// shrink (admit) when a map (or call) task is done, or for the
	// backlog's bound to grow.
	progress chan struct{}
	// backlog is the job's present bound on its map tasks queued or
	// running (pace.go); 0: none. admitted and admitBase are what the
	// publishing counted last (admit), waiting whether it waits for room.
	backlog             atomic.Int64
	admitted, admitBase atomic.Int64
	waiting, allQueued  atomic.Bool
	pace                jobPace       // the run loop's
	runTime             time.Duration // sum of the run times of map tasks done, under mu
	publishing          time.Time     // when the publishing started (set before it starts)
	// caughtUp is closed once a recovered job's replay has handled every
	// event recorded before it was taken up (see catchUp).
	caughtUp chan struct{}

	// from is the stream position of the job's spec record: the job's
	// subscriptions (its events, its reducers' feeds) start there.
	from uint64

	// abandoned is set when the coordinator stops acting on the job
	// without ending it (its lease ran out, or another coordinator owns
	// it now; own.go).
	abandoned atomic.Bool
	// replayEnd, when set, makes the job a replay (replay.go): its events
	// are read up to its end record at replayTo to rebuild its results,
	// and nothing is published.
	replayEnd *wire.JobStatus
	replayTo  uint64

	done   chan struct{}
	endReq chan endRequest
	ctx    context.Context
	cancel context.CancelFunc
	events <-chan bus.Message
}

func newJob(ctx context.Context, c *Coordinator, spec *wire.JobSpec) (*job, error) {
	j := &job{c: c, spec: spec, id: spec.ID, done: make(chan struct{}), endReq: make(chan endRequest, 4), progress: make(chan struct{}, 1)}
	if limit := int64(c.cfg.JobBacklog); limit > 0 {
		j.backlog.Store(c.pace.start(paceKey(spec.Pool, spec.Function), limit, time.Now()))
	}
	if err := j.makeInputs(ctx); err != nil {
		return nil, err
	}
	// The deadline is the accepting coordinator's (recorded in the spec);
	// a spec recorded without one (an older coordinator) gets a whole
	// timeout from now rather than one counted on a submitter's clock.
	switch {
	case spec.Deadline > 0:
		j.deadline = time.Unix(0, spec.Deadline)
	case spec.TimeoutMS > 0:
		j.deadline = time.Now().Add(time.Duration(spec.TimeoutMS) * time.Millisecond)
	}
	submitted := spec.Accepted
	if submitted == 0 {
		submitted = spec.SubmittedAt
	}
	if spec.Kind == wire.JobMapReduce {
		j.setupGroups()
	}
	j.maps = newAttempts(j.n)
	j.results = newResultStore(j.n, c.cfg.ResultMemory)
	j.status = wire.JobStatus{ID: spec.ID, State: wire.StateRunning, Kind: spec.Kind, Total: j.n + j.groups, Submitted: submitted, Owner: c.own.id}
	j.ctx, j.cancel = context.WithCancel(c.ctx)
	return j, nil
}

func (j *job) setupGroups() {
	j.groups = 1
	if j.spec.ReducerOnePerObject && j.objs != nil {
		j.groupOf = make([]int32, j.n)
		max := -1
		for i, o := range j.objs {
			g := 0
			if o != nil {
				g = o.Group
			}
			j.groupOf[i] = int32(g)
			if g > max {
				max = g
			}
		}
		j.groups = max + 1
	}
	j.groupSize = make([]int, j.groups)
	j.groupBase = make([]int, j.groups)
	for i := j.n - 1; i >= 0; i-- {
		g := j.group(i)
		j.groupSize[g]++
		j.groupBase[g] = i
	}
	j.groupFed = make([]int, j.groups)
	j.reducerQueued = make([]bool, j.groups)
	j.eosSent = make([]bool, j.groups)
	j.feedBuf = make([][]wire.FeedItem, j.groups)
	j.reducers = newAttempts(j.groups)
	j.rResults = make([]wire.Value, j.groups)
}

func (j *job) group(i int) int {
	if j.groupOf == nil {
		return 0
	}
	return int(j.groupOf[i])
}

func (j *job) streaming() bool { return j.spec.ReduceMode != wire.ReduceBarrier }

// start subscribes to the job's events from its spec's position and
// launches its goroutines.
func (j *job) start() error {
	if j.from == 0 {
		return fmt.Errorf("job %s: no position of its spec on the job log", j.id)
	}
	j.mu.Lock()
	j.status.From = j.from
	j.mu.Unlock()
	ev, err := j.c.bus.Subscribe(j.ctx, wire.TaskEvents(j.id), bus.SubscribeOptions{From: j.from, To: j.replayTo})
	if err != nil {
		j.cancel()
		return fmt.Errorf("subscribe to job events: %w", err)
	}
	if j.recovered && !j.wasPublished {
		if ev, err = j.catchUp(ev); err != nil {
			j.cancel()
			return err
		}
	}
	j.events = ev
	if j.replayEnd != nil {
		j.c.wg.Add(1)
		go func() { defer j.c.wg.Done(); j.run() }()
		return nil
	}
	if err := j.startMonitoring(); err != nil {
		j.cancel()
		return err
	}
	if j.spec.Kind == wire.JobMapReduce {
		j.feeds = make(chan wire.Feed, 64)
		j.c.wg.Add(1)
		go func() { defer j.c.wg.Done(); j.feeder() }()
	}
	switch {
	case !j.recovered:
		j.publishing = time.Now()
		j.spawn(j.publishAll)
	case !j.wasPublished:
		j.publishing = time.Now()
		j.spawn(j.republish)
	default:
		j.allQueued.Store(true)
	}
	if !j.recovered {
		j.c.wg.Add(1)
		go func() { defer j.c.wg.Done(); j.jobEvent(j.ctx, wire.JobEventSubmitted, j.snapshot(), 0, nil) }()
	}
	j.c.wg.Add(1)
	go func() { defer j.c.wg.Done(); j.run() }()
	return nil
}

// spawn runs f on a goroutine that may publish tasks of the job; the
// coordinator's Close and the job's end-of-job purge wait for it. Call it
// only from start or the event loop (before finish).
func (j *job) spawn(f func()) {
	if j.replayEnd != nil {
		return // a replay publishes nothing
	}
	j.publishers.Add(1)
	j.c.wg.Add(1)
	go func() {
		defer j.c.wg.Done()
		defer j.publishers.Done()
		f()
	}()
}

func (j *job) memory(kind wire.TaskKind) int {
	switch {
	case kind == wire.TaskReduce && j.spec.ReduceRuntimeMemory > 0:
		return j.spec.ReduceRuntimeMemory
	case kind == wire.TaskMap && j.spec.MapRuntimeMemory > 0:
		return j.spec.MapRuntimeMemory
	}
	return j.spec.RuntimeMemory
}

func (j *job) task(i int, attempt int) (*wire.Task, error) {
	kind := wire.TaskMap
	if j.spec.Kind == wire.JobCall {
		kind = wire.TaskCall
	}
	in, err := j.input(i)
	if err != nil {
		return nil, fmt.Errorf("task %d: %w", i, err)
	}
	t := &wire.Task{
		Job: j.id, Index: i, Attempt: attempt, Kind: kind, Function: j.spec.Function,
		Args: in.Args, Kwargs: in.Kwargs, InputRef: in.Ref,
		TimeoutMS: j.spec.TaskTimeoutMS, MemoryMB: j.memory(kind), Env: j.spec.Env,
		Modules: j.spec.Modules, Queued: time.Now().UnixNano(), Monitor: j.spec.Monitor, Trace: j.mon.trace,
	}
	if j.objs != nil {
		t.Obj = j.objs[i]
	}
	if !j.deadline.IsZero() {
		t.Deadline = j.deadline.UnixNano()
	}
	return t, nil
}

func (j *job) reduceTask(g int, attempt int) *wire.Task {
	t := &wire.Task{
		Job: j.id, Index: g, Attempt: attempt, Kind: wire.TaskReduce, Function: j.spec.ReduceFunction,
		Feed: wire.FeedSubject(j.id, g), Expect: j.groupSize[g], FeedFrom: j.from, IndexBase: j.groupBase[g],
		TimeoutMS: j.spec.TaskTimeoutMS, MemoryMB: j.memory(wire.TaskReduce), Env: j.spec.Env,
		Modules: j.spec.Modules, Queued: time.Now().UnixNano(), Trace: j.mon.trace,
	}
	if !j.deadline.IsZero() {
		t.Deadline = j.deadline.UnixNano()
	}
	return t
}

func (j *job) encodeTask(t *wire.Task) (bus.Message, error) {
	data, err := wire.Encode(wire.KindTask, t)
	if err != nil {
		return bus.Message{}, err
	}
	// No message id: the job log's queued records, not the bus's
	// deduplication, keep a takeover from queueing a task twice (and
	// JetStream parses, stores and delivers a message without headers for
	// less).
	m := bus.Message{Key: j.id, Data: data}
	if s := j.c.cfg.Signer; s != nil {
		// A copy: m itself does not escape, and an unsigned task costs
		// no allocation for its message.
		sm := m
		s.Sign(&sm)
		return sm, nil
	}
	return m, nil
}

// publishAll enqueues every map task, invoke_pool_threads at a time.
func (j *job) publishAll() {
	batch := j.spec.InvokePoolThreads
	if batch <= 0 {
		batch = j.c.cfg.PublishBatch
	}
	if batch > 4096 {
		batch = 4096
	}
	batch = j.c.cfg.backlogBatch(batch)
	// The compute backend hears of every task once they are all on the
	// queue, or once the backlog is full (the rest go on as earlier ones
	// end, while its runtimes drain the queue).
	announce := j.announcer(j.n)
	msgs := make([]bus.Message, 0, batch)
	marked := time.Now()
	for i := 0; i < j.n; i += len(msgs) {
		if j.ctx.Err() != nil {
			return // the job ended (cancel, timeout, a failed task)
		}
		next, ok := j.admit(int64(i), min(batch, j.n-i), 0, announce)
		if !ok || !j.acting() {
			return
		}
		msgs = msgs[:0]
		for k := i; k < i+next; k++ {
			t, err := j.task(k, 1)
			var m bus.Message
			if err == nil {
				if m, err = j.encodeTask(t); err != nil {
					err = fmt.Errorf("task %d: encoding: %w", k, err)
				}
			}
			if err != nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "making " + err.Error()}, k)
				return
			}
			msgs = append(msgs, m)
		}
		if err := j.enqueueRetrying(j.spec.Pool, msgs); err != nil {
			if j.ctx.Err() != nil {
				return
			}
			msg := fmt.Sprintf("publishing tasks %d..%d: %v", i, i+len(msgs)-1, err)
			if errors.Is(err, bus.ErrTooLarge) {
				msg += " (inputs this large need storage configured, so that they travel by reference)"
			}
			j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: msg}, i)
			return
		}
		j.tel().Metrics.Published(j.ctx, len(msgs))
		j.observePublished(len(msgs))
		if every := j.c.cfg.QueuedEvery; every >= 0 && i+len(msgs) < j.n && time.Since(marked) >= every {
			j.markQueued(wire.Queued{Through: i + len(msgs)})
			marked = time.Now()
		}
	}
	j.markPublished()
	announce()
	if j.spec.Kind == wire.JobMapReduce && j.n == 0 {
		j.requestEnd("", nil, 0) // wakes the loop to start the reducer of an empty map
	}
}

// announcer returns a function that tells the Published hook of n tasks,
// the first time it is called.
func (j *job) announcer(n int) func() {
	done := false
	return func() {
		if !done && n > 0 {
			done = true
			j.published(n)
		}
	}
}

// admit waits until the job's backlog (its bound, pace.go) has room for
// more tasks and returns how many of want may go now: queued of its map
// tasks were put on the queue and, of those, mapsDone grew by what it was
// at base. It waits for room for want, or half the bound when that is
// less (a bound below want would never have room for it; publishing a
// few tasks at a time costs a confirmation round trip each), and calls
// full before it waits. False when the job ended first.
func (j *job) admit(queued int64, want int, base int64, full func()) (int, bool) {
	for {
		limit := j.backlog.Load()
		if limit <= 0 {
			j.admitted.Store(queued + int64(want))
			return want, true
		}
		room := limit - (queued - (j.doneMaps() - base))
		if room >= min(int64(want), max(limit/2, 1)) {
			n := int(min(room, int64(want)))
			j.admitted.Store(queued + int64(n))
			j.admitBase.Store(base)
			return n, true
		}
		j.admitted.Store(queued)
		j.admitBase.Store(base)
		full()
		j.waiting.Store(true)
		select {
		case <-j.progress:
		case <-j.ctx.Done():
			j.waiting.Store(false)
			return 0, false
		}
		j.waiting.Store(false)
	}
}

// repace sets the job's backlog bound from its pace (pace.go); the run
// loop calls it at each progress tick.
func (j *job) repace(now time.Time) {
	limit := int64(j.c.cfg.JobBacklog)
	if limit <= 0 || j.allQueued.Load() || j.publishing.IsZero() {
		return
	}
	j.mu.Lock()
	done, run, running := int64(j.mapsDone), j.runTime, int64(j.status.Running)
	j.mu.Unlock()
	rate, mean, ok := j.pace.measure(paceSample{at: now, done: done, run: run})
	old := j.backlog.Load()
	next := old
	if ok {
		next = paceTarget(rate, mean, limit)
	}
	// Held back by its bound, with nearly all it has out running (the
	// runtimes announce tasks that run past a few milliseconds): the
	// runtimes may have room for more than the rate shows yet.
	if out := j.admitted.Load() - (done - j.admitBase.Load()); j.waiting.Load() && out > 0 && running >= out*3/4 {
		next = max(next, min(2*old, limit))
	}
	if next == old {
		return
	}
	j.backlog.Store(next)
	j.c.log.Debug("job backlog follows the job's pace", "job", j.id, "backlog", next, "was", old, "rate", rate, "run", mean)
	if next > old {
		select {
		case j.progress <- struct{}{}:
		default:
		}
	}
}

// setPace fills in the pace of a job ending done (under j.mu): how fast
// its map tasks went from the start of their publishing to its end, and
// their mean run time. A job taken over counts from its acceptance (by
// the clock of the coordinator that accepted it), as its tasks done
// count from there.
func (j *job) setPace(end time.Time) {
	start := j.publishing
	if j.recovered {
		start = time.Time{}
		if j.spec.Accepted > 0 {
			start = time.Unix(0, j.spec.Accepted)
		}
	}
	if start.IsZero() || j.mapsDone == 0 || !end.After(start) {
		return
	}
	j.status.TasksPerSec = float64(j.mapsDone) / end.Sub(start).Seconds()
	j.status.TaskRunMeanUs = (j.runTime / time.Duration(j.mapsDone)).Microseconds()
}

// doneMaps is mapsDone, read under j.mu.
func (j *job) doneMaps() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return int64(j.mapsDone)
}

func (j *job) requestEnd(state wire.JobState, err *wire.TaskError, task int) {
	select {
	case j.endReq <- endRequest{state: state, err: err, task: task}:
	case <-j.done:
	}
}

// run is the job's event loop.
func (j *job) run() {
	var timeout <-chan time.Time
	if !j.deadline.IsZero() && j.replayEnd == nil {
		t := time.NewTimer(time.Until(j.deadline))
		defer t.Stop()
		timeout = t.C
	}
	tick := time.NewTicker(j.c.cfg.ProgressInterval)
	defer tick.Stop()
	lastProgress := wire.JobStatus{}
	j.lastEvent.Store(time.Now().UnixNano())
	lastStallCall := time.Now()
	if j.spec.Kind == wire.JobMapReduce && j.n == 0 {
		j.queueReducers()
	}
	for {
		select {
		case m, ok := <-j.events:
			if !ok {
				if j.c.ctx.Err() != nil || j.abandoned.Load() {
					return // coordinator closing, or the job dropped
				}
				if j.replayEnd != nil {
					j.finish(j.replayEnd.State, j.replayEnd.Error, j.replayEnd.FailedTask)
					return
				}
				j.finish(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "event subscription closed"}, -1)
				return
			}
			j.lastEvent.Store(time.Now().UnixNano())
			j.onMessage(m)
			if j.spec.Kind == wire.JobMapReduce {
				j.flushFeeds(len(j.events) == 0)
			}
		case r := <-j.endReq:
			if r.state == "" {
				if j.spec.Kind == wire.JobMapReduce && j.n == 0 {
					j.flushFeeds(true)
				}
				continue
			}
			j.finish(r.state, r.err, r.task)
			return
		case <-timeout:
			j.finish(wire.StateTimedOut, &wire.TaskError{Kind: wire.ErrTimeout,
				Message: fmt.Sprintf("job did not finish within its timeout of %v", time.Duration(j.spec.TimeoutMS)*time.Millisecond)}, -1)
			return
		case p := <-j.polledChan():
			j.onPolled(p)
		case err := <-j.pollErrChan():
			j.finish(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "polling status objects: " + err.Error()}, -1)
			return
		case now := <-tick.C:
			if j.replayEnd != nil {
				continue
			}
			j.repace(now)
			st := j.snapshot()
			if after := j.c.cfg.StallAfter; after > 0 && j.c.cfg.Hooks.Published != nil {
				idle := time.Since(time.Unix(0, j.lastEvent.Load()))
				if out := st.Total - st.Done - st.Failed; out > 0 && idle > after && time.Since(lastStallCall) > after {
					lastStallCall = time.Now()
					j.c.log.Warn("no event for a while: asking the compute backend for runtimes again", "job", j.id, "outstanding", out, "idle", idle.Round(time.Second))
					j.c.wg.Add(1)
					go func() { defer j.c.wg.Done(); j.published(out) }()
					if j.spec.ReduceFunction != "" && j.c.cfg.Hooks.PublishedReduce != nil {
						j.c.wg.Add(1)
						go func() { defer j.c.wg.Done(); j.publishedReduce(1) }()
					}
				}
			}
			if st != lastProgress {
				lastProgress = st
				if data, err := wire.Encode(wire.KindResp, wire.Response{Status: &st}); err == nil {
					_ = j.c.bus.Notify(j.ctx, wire.ProgressSubject(j.id), data)
				}
				j.progressEvent(j.ctx, st)
			}
		case <-j.c.ctx.Done():
			return
		}
		if j.abandoned.Load() || j.snapshot().State.Terminal() {
			return
		}
		if j.isDone() {
			j.finish(wire.StateDone, nil, -1)
			return
		}
	}
}

func (j *job) isDone() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status.Done == j.status.Total && j.status.State == wire.StateRunning && j.pollComplete()
}

// onMessage handles one message of the job's event subject: a batch of
// events (or a single one).
func (j *job) onMessage(m bus.Message) {
	evs, err := DecodeEvents(m.Data)
	if err != nil {
		j.c.log.Warn("ignoring malformed event message", "job", j.id, "err", err)
		return
	}
	for i := range evs {
		if j.snapshot().State.Terminal() {
			return
		}
		j.onEvent(evs[i], m.Seq)
	}
}

// DecodeEvents decodes an event message: a batch or a single event.
func DecodeEvents(data []byte) ([]wire.Event, error) {
	kind, err := wire.Peek(data)
	if err != nil {
		return nil, err
	}
	switch kind {
	case wire.KindEvents:
		var b wire.Events
		if err := wire.Decode(data, wire.KindEvents, &b); err != nil {
			return nil, err
		}
		return b.Events, nil
	case wire.KindEvent:
		var ev wire.Event
		if err := wire.Decode(data, wire.KindEvent, &ev); err != nil {
			return nil, err
		}
		return []wire.Event{ev}, nil
	}
	return nil, fmt.Errorf("%w: a %q message on an event subject", wire.ErrMalformed, kind)
}

// onEvent applies one task event to the job: map (or call) tasks and
// reducers go through the same state machine (attempts). seq is the
// stream position of the message that carried it.
func (j *job) onEvent(ev wire.Event, seq uint64) {
	if ev.Job != j.id {
		return
	}
	reduce := ev.Kind == wire.TaskReduce
	set, n, what := &j.maps, j.n, "task"
	if reduce {
		set, n, what = &j.reducers, j.groups, "reducer"
	}
	i := ev.Task
	if i < 0 || i >= n {
		j.c.log.Warn("ignoring an event for a "+what+" the job does not have", "job", j.id, what, i)
		return
	}
	j.mu.Lock()
	o, next := set.apply(i, &ev, j.spec.Retries, &j.status)
	j.observe(o, ev.Worker, ev.Started, ev.Finished)
	switch o {
	case succeeded:
		v := ev.Result
		if ev.ResultRef != "" {
			v = refValue(ev.ResultRef)
		}
		if reduce {
			j.rResults[i] = v
			j.reduceDone(&ev)
			break
		}
		j.results.set(i, v, seq)
		j.taskDone(&ev)
		j.mapsDone++
		if ev.Finished > ev.Started && ev.Started > 0 {
			j.runTime += time.Duration(ev.Finished - ev.Started)
		}
		select {
		case j.progress <- struct{}{}:
		default:
		}
		if j.spec.Kind == wire.JobMapReduce {
			j.feed(i, &ev)
		}
	case retried:
		j.spawn(func() {
			var t *wire.Task
			var err error
			if reduce {
				t = j.reduceTask(i, next)
			} else {
				t, err = j.task(i, next)
			}
			if err != nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "re-publishing " + err.Error()}, i)
				return
			}
			j.enqueue(t)
		})
		j.c.log.Info("retrying "+what, "job", j.id, what, i, "attempt", next, "error", ev.Error.Error())
	case failed:
		j.taskFailed(&ev)
		st := j.status
		j.mu.Unlock()
		e := ev.Error
		if e == nil {
			e = &wire.TaskError{Kind: wire.ErrInternal, Message: what + " failed without an error"}
		}
		if j.acting() {
			j.jobEvent(j.ctx, wire.JobEventTaskFailed, st, int64(i)+1, func(d *wire.JobEventData) { d.Task, d.Error = &i, e })
		}
		j.finish(j.failureState(e), e, i)
		return
	case ignored:
		if !set.published(i, ev.Attempt) {
			j.c.log.Warn("ignoring an event of an attempt that was never published", "job", j.id, what, i, "attempt", ev.Attempt, "type", ev.Type)
		}
	}
	j.mu.Unlock()
}

func (j *job) enqueue(t *wire.Task) {
	m, err := j.encodeTask(t)
	pool := j.spec.Pool
	switch {
	case t.Kind == wire.TaskReduce && j.spec.ReducerWaitLocal:
		pool = wire.LocalReducePool(j.id)
	case t.Kind == wire.TaskReduce:
		pool = wire.ReducePool(pool)
	}
	if err == nil && !j.acting() {
		return
	}
	if err == nil {
		err = j.enqueueRetrying(pool, []bus.Message{m})
	}
	if err != nil && j.ctx.Err() == nil {
		j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("re-publishing task %d: %v", t.Index, err)}, t.Index)
	}
	if err == nil && t.Kind == wire.TaskReduce && t.Attempt == 1 {
		j.markQueued(wire.Queued{Reducers: []int{t.Index}})
	}
	if err == nil && t.Attempt > 1 {
		j.tel().Metrics.Retried(j.ctx)
	} else if err == nil {
		j.tel().Metrics.Published(j.ctx, 1)
		j.observePublished(1)
	}
	switch {
	case err == nil && pool == wire.ReducePool(j.spec.Pool) && j.c.cfg.Hooks.PublishedReduce != nil:
		j.publishedReduce(1)
	case err == nil && (pool == j.spec.Pool || pool == wire.ReducePool(j.spec.Pool)):
		j.published(1)
	}
}

// publishedReduce tells the PublishedReduce hook that reducers went on
// the pool's reduce queue.
func (j *job) publishedReduce(tasks int) {
	if err := j.c.cfg.Hooks.PublishedReduce(j.ctx, j.spec, tasks); err != nil && j.ctx.Err() == nil {
		j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("compute backend: %v", err)}, -1)
	}
}

// published tells the Published hook that tasks went on the job's pool.
func (j *job) published(tasks int) {
	h := j.c.cfg.Hooks.Published
	if h == nil {
		return
	}
	if err := h(j.ctx, j.spec, tasks); err != nil && j.ctx.Err() == nil {
		j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("compute backend: %v", err)}, -1)
	}
}

// refValue marks a result held in storage; the client resolves it.
func refValue(ref string) wire.Value {
	b, _ := jsonString(ref)
	return append(wire.Value(`{"$skein_ref":`), append(b, '}')...)
}

func jsonString(s string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			buf.WriteByte('\\')
			buf.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&buf, `\u%04x`, r)
		default:
			buf.WriteRune(r)
		}
	}
	buf.WriteByte('"')
	return buf.Bytes(), nil
}

// finish ends the job once.
func (j *job) finish(state wire.JobState, e *wire.TaskError, task int) {
	if j.replayEnd != nil {
		j.endReplay()
		return
	}
	if !j.acting() {
		return
	}
	j.mu.Lock()
	if j.status.State.Terminal() {
		j.mu.Unlock()
		return
	}
	j.status.State = state
	j.status.Error = e
	if state != wire.StateDone {
		// The runtimes stop what still runs (the cancel notice below).
		j.status.Stopped, j.status.Running = j.status.Running, 0
	}
	if e != nil {
		j.status.FailedTask = max(task, -1) // -1: the job's failure, no task's
	}
	j.ended = time.Now()
	j.status.Ended = j.ended.UnixNano()
	j.status.LatencyP50us, j.status.LatencyP99us = percentiles(j.lat)
	if state == wire.StateDone {
		j.setPace(j.ended)
	}
	st := j.status
	j.mu.Unlock()
	j.c.pace.learnEnd(paceKey(j.spec.Pool, j.spec.Function), st)

	bctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 10*time.Second)
	defer cancel()
	if state != wire.StateDone {
		// Runtimes stop the job's running tasks and drop its queued ones
		// when they take them.
		if data, err := wire.Encode(wire.KindCancel, wire.Cancel{Job: j.id, Reason: string(state)}); err == nil {
			_ = j.c.bus.Notify(bctx, "cancel", data)
		}
	}
	if data, err := wire.Encode(wire.KindEnd, wire.End{Status: st}); err == nil {
		m := bus.Message{Data: data, ID: j.id + "-end"}
		j.c.sign(&m)
		if err := j.c.bus.Publish(bctx, wire.JobEndSubject(j.id), m); err != nil {
			j.c.log.Error("recording the job's end", "job", j.id, "err", err)
		}
	}
	if data, err := wire.Encode(wire.KindResp, wire.Response{Status: &st}); err == nil {
		_ = j.c.bus.Notify(bctx, wire.ProgressSubject(j.id), data)
	}
	j.jev.wg.Wait() // a progress event on its way goes before the end's
	j.jobEvent(bctx, wire.JobEventType(state), st, 0, func(d *wire.JobEventData) {
		d.Error = e
		if task >= 0 && e != nil {
			d.Task = &task
		}
		if state == wire.StateDone {
			d.Result = &wire.JobResult{Fetch: "submit result " + j.id}
			if ref := j.resultRef(); ref != "" {
				d.Result.Ref = ref
			}
		}
	})
	if h := j.c.cfg.Hooks.Ended; h != nil {
		h(bctx, j.spec, st)
	}
	j.endMonitoring(state, e)
	args := []any{"job", j.id, "state", state, "tasks", st.Total, "elapsed", time.Duration(st.Ended - st.Submitted)}
	if e != nil {
		args = append(args, "error", e.Error())
	}
	j.c.log.Info("job ended", args...)
	close(j.done)
	j.cancel() // stops publishing
	j.c.wg.Add(1)
	go func() { defer j.c.wg.Done(); j.purge() }()
}

// purge removes what is left of the job on its queues once nothing
// publishes its tasks any more: queued tasks of a job that failed, timed
// out or was cancelled, and copies of tasks that were queued twice (a
// retried publish, a redelivery after a broker crash) of any job. A bus
// that cannot purge leaves them to the runtimes, which drop tasks of
// ended jobs.
func (j *job) purge() {
	p, ok := j.c.bus.(bus.Purger)
	if !ok {
		return
	}
	j.publishers.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 2*time.Minute)
	defer cancel()
	pools := []string{j.spec.Pool}
	if j.spec.Kind == wire.JobMapReduce {
		pools = append(pools, wire.ReducePool(j.spec.Pool))
	}
	for _, pool := range pools {
		if err := p.Purge(ctx, pool, j.id); err != nil && j.c.ctx.Err() == nil {
			j.c.log.Warn("purging the job's queued tasks", "job", j.id, "pool", pool, "err", err)
		}
	}
}

// percentiles returns the p50 and p99 of the latencies in µs (at least 1
// when there are any, so that a fast job does not read as "none").
func percentiles(lat []int64) (p50, p99 int64) {
	if len(lat) == 0 {
		return 0, 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return max(stats.Sorted(s, 50)/1000, 1), max(stats.Sorted(s, 99)/1000, 1)
}

func (j *job) snapshot() wire.JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status
}

// reported is the job's status as the coordinator reports it: a job
// being rebuilt from the event stream (replay.go) is what its end record
// says, not the half-rebuilt job its run loop sees (snapshot).
func (j *job) reported() wire.JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.replayEnd != nil && !j.status.State.Terminal() {
		st := *j.replayEnd
		st.From = j.from
		return st
	}
	return j.status
}

func (j *job) endedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ended
}

func (j *job) page(offset, limit, maxBytes int) (wire.Response, error) {
	j.mu.Lock()
	st := j.status
	resp := wire.Response{Status: &st}
	if st.State != wire.StateDone {
		j.mu.Unlock()
		return resp, nil
	}
	switch {
	case j.spec.Kind == wire.JobCall:
		v, _ := j.results.get(0)
		j.mu.Unlock()
		resp.Results, resp.Total = []wire.Value{v}, 1
		return resp, nil
	case j.spec.Kind == wire.JobMapReduce && !j.spec.ReducerOnePerObject:
		resp.Results, resp.Total = j.rResults[:1], 1
		j.mu.Unlock()
		return resp, nil
	case j.spec.Kind == wire.JobMapReduce:
		all := j.rResults
		j.mu.Unlock()
		return pageOf(resp, len(all), offset, limit, maxBytes, func(k int) int { return len(all[k]) },
			func(k int) (wire.Value, bool) { return all[k], true }, nil)
	}
	r := j.results
	j.mu.Unlock()
	// A finished job's store no longer changes.
	return pageOf(resp, j.n, offset, limit, maxBytes, r.size, r.get, func(tasks []int) (map[int]wire.Value, error) {
		pos := make([]uint64, len(tasks))
		for k, t := range tasks {
			pos[k] = r.seq[t]
		}
		ctx, cancel := context.WithTimeout(j.c.ctx, time.Minute)
		defer cancel()
		return fromStream(ctx, j.c.bus, j.id, tasks, pos)
	})
}

// pageOf fills resp with the results from offset: at most limit (0: no
// limit) and about maxBytes (0: no bound; at least one result). get gives
// a result held in memory; the others are read with load, in one go.
func pageOf(resp wire.Response, total, offset, limit, maxBytes int, size func(int) int, get func(int) (wire.Value, bool), load func([]int) (map[int]wire.Value, error)) (wire.Response, error) {
	resp.Total, resp.List = total, true
	if offset < 0 || offset > total {
		return resp, fmt.Errorf("result offset %d out of range 0..%d", offset, total)
	}
	var missing []int
	n := 0
	for k := offset; k < total; k++ {
		if limit > 0 && k-offset >= limit {
			break
		}
		n += size(k) + 8
		if maxBytes > 0 && n > maxBytes && k > offset {
			break
		}
		v, ok := get(k)
		if !ok {
			missing = append(missing, k)
		}
		resp.Results = append(resp.Results, v)
	}
	if len(missing) > 0 {
		vals, err := load(missing)
		if err != nil {
			return resp, err
		}
		for _, k := range missing {
			resp.Results[k-offset] = vals[k]
		}
	}
	return resp, nil
}

// failureState is how a task's final failure ends the job: a timeout at
// the job's own deadline (the task ran under it) is the job timing out.
func (j *job) failureState(e *wire.TaskError) wire.JobState {
	if e != nil && e.Kind == wire.ErrTimeout && !j.deadline.IsZero() && time.Now().After(j.deadline.Add(-100*time.Millisecond)) {
		return wire.StateTimedOut
	}
	return wire.StateFailed
}

// enqueueRetrying publishes a batch, retrying for about 15 seconds on
// errors other than a message too large: a broker may refuse the first
// declaration of a queue that runtimes create at the same time, and a
// clustered one has no task stream (or queue) leader for the seconds of
// an election after its node is lost. A task of a retried batch may be
// queued twice (its first outcome wins, and the end-of-job purge removes
// the copy).
func (j *job) enqueueRetrying(pool string, msgs []bus.Message) error {
	return retry.Do(j.ctx, retry.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second, Tries: 10, OnRetry: func(attempt int, err error, _ time.Duration) {
		j.c.log.Warn("publishing tasks failed; retrying", "job", j.id, "attempt", attempt, "err", err)
	}}, func() error {
		err := j.c.bus.Enqueue(j.ctx, pool, msgs...)
		if errors.Is(err, bus.ErrTooLarge) {
			return retry.Permanent(err)
		}
		return err
	})
}

// acting reports whether the coordinator may still act on the job: it
// has not dropped it, and holds its lease (own.go). A job whose lease ran
// out is dropped here, at the first thing it would have done.
func (j *job) acting() bool {
	if j.abandoned.Load() {
		return false
	}
	if !j.c.leaseHeld() {
		j.c.drop(j, "the coordinator's lease ran out (it was paused or lost the broker)")
		return false
	}
	return true
}

// owned reports whether the coordinator acts on the job (it is neither
// dropped nor a replay).
func (j *job) owned() bool { return !j.abandoned.Load() && j.replayEnd == nil }

// abandon stops the job's goroutines without ending it; it reports
// whether this call did.
func (j *job) abandon() bool {
	if j.replayEnd != nil || !j.abandoned.CompareAndSwap(false, true) {
		return false
	}
	j.cancel()
	return true
}
