package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

const (
	stQueued uint8 = iota
	stRunning
	stDone
	stFailed
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

	inputs   []Input
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
	rState        []uint8
	rAttempt      []uint8
	rResults      []wire.Value
	mapsDone      int
	feeds         chan wire.Feed

	mu      sync.Mutex
	status  wire.JobStatus
	state   []uint8
	attempt []uint8
	results []wire.Value
	lat     []int64
	ended   time.Time
	mon     monitorState // telemetry, poll mode (monitor.go)

	// A job picked up again by a restarted coordinator: its state comes
	// from replaying its events; wasPublished says whether all of its
	// tasks had reached the queue.
	recovered, wasPublished bool
	lastEvent               atomic.Int64 // unix ns of the last event handled

	done   chan struct{}
	endReq chan endRequest
	ctx    context.Context
	cancel context.CancelFunc
	events <-chan bus.Message
}

func newJob(ctx context.Context, c *Coordinator, spec *wire.JobSpec) (*job, error) {
	j := &job{c: c, spec: spec, id: spec.ID, done: make(chan struct{}), endReq: make(chan endRequest, 4)}
	extra, err := ParseExtra(spec.ExtraParams)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch spec.Kind {
	case wire.JobCall:
		in, err := SplitElement(spec.Data, extra)
		if err != nil {
			return nil, fmt.Errorf("%w: data: %v", ErrInvalid, err)
		}
		j.inputs = []Input{in}
	default:
		elems, err := SplitList(spec.Iterdata)
		if err != nil {
			return nil, fmt.Errorf("%w: iterdata: %v", ErrInvalid, err)
		}
		if h := c.cfg.Hooks.Expand; h != nil {
			ins, objs, err := h(ctx, spec, elems, extra)
			if err != nil {
				return nil, fmt.Errorf("%w: iterdata: %w", ErrInvalid, err)
			}
			j.inputs, j.objs = ins, objs
		}
		if j.inputs == nil {
			j.inputs = make([]Input, len(elems))
			for i, e := range elems {
				in, err := SplitElement(e, extra)
				if err != nil {
					return nil, fmt.Errorf("%w: iterdata element %d: %v", ErrInvalid, i, err)
				}
				j.inputs[i] = in
			}
		}
	}
	if h := c.cfg.Hooks.Spill; h != nil {
		if err := h(ctx, spec, j.inputs); err != nil {
			return nil, fmt.Errorf("storing large task inputs: %w", err)
		}
	}
	j.n = len(j.inputs)
	if spec.TimeoutMS > 0 {
		j.deadline = time.Unix(0, spec.SubmittedAt).Add(time.Duration(spec.TimeoutMS) * time.Millisecond)
	}
	if spec.Kind == wire.JobMapReduce {
		j.setupGroups()
	}
	j.state = make([]uint8, j.n)
	j.attempt = make([]uint8, j.n)
	j.results = make([]wire.Value, j.n)
	j.status = wire.JobStatus{ID: spec.ID, State: wire.StateRunning, Kind: spec.Kind, Total: j.n + j.groups, Submitted: spec.SubmittedAt}
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
	j.rState = make([]uint8, j.groups)
	j.rAttempt = make([]uint8, j.groups)
	j.rResults = make([]wire.Value, j.groups)
}

func (j *job) group(i int) int {
	if j.groupOf == nil {
		return 0
	}
	return int(j.groupOf[i])
}

func (j *job) streaming() bool { return j.spec.ReduceMode != wire.ReduceBarrier }

// start subscribes to the job's events and launches its goroutines.
func (j *job) start() error {
	j.ctx, j.cancel = context.WithCancel(j.c.ctx)
	since := time.Unix(0, j.spec.SubmittedAt).Add(-2 * time.Second)
	ev, err := j.c.bus.Subscribe(j.ctx, wire.TaskEvents(j.id), bus.SubscribeOptions{Since: since})
	if err != nil {
		j.cancel()
		return fmt.Errorf("subscribe to job events: %w", err)
	}
	j.events = ev
	if err := j.startMonitoring(); err != nil {
		j.cancel()
		return err
	}
	if j.spec.Kind == wire.JobMapReduce {
		j.feeds = make(chan wire.Feed, 64)
		j.c.wg.Add(1)
		go func() { defer j.c.wg.Done(); j.feeder() }()
	}
	j.c.wg.Add(2)
	go func() {
		defer j.c.wg.Done()
		switch {
		case !j.recovered:
			j.publishAll()
		case !j.wasPublished:
			j.republish()
		}
	}()
	go func() { defer j.c.wg.Done(); j.run() }()
	return nil
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

func (j *job) task(i int, attempt int) *wire.Task {
	kind := wire.TaskMap
	if j.spec.Kind == wire.JobCall {
		kind = wire.TaskCall
	}
	t := &wire.Task{
		Job: j.id, Index: i, Attempt: attempt, Kind: kind, Function: j.spec.Function,
		Args: j.inputs[i].Args, Kwargs: j.inputs[i].Kwargs, InputRef: j.inputs[i].Ref,
		TimeoutMS: j.spec.TaskTimeoutMS, MemoryMB: j.memory(kind), Env: j.spec.Env,
		Modules: j.spec.Modules, Queued: time.Now().UnixNano(), Monitor: j.spec.Monitor, Trace: j.mon.trace,
	}
	if j.objs != nil {
		t.Obj = j.objs[i]
	}
	if !j.deadline.IsZero() {
		t.Deadline = j.deadline.UnixNano()
	}
	return t
}

func (j *job) reduceTask(g int, attempt int) *wire.Task {
	t := &wire.Task{
		Job: j.id, Index: g, Attempt: attempt, Kind: wire.TaskReduce, Function: j.spec.ReduceFunction,
		Feed: wire.FeedSubject(j.id, g), Expect: j.groupSize[g], JobStart: j.spec.SubmittedAt, IndexBase: j.groupBase[g],
		TimeoutMS: j.spec.TaskTimeoutMS, MemoryMB: j.memory(wire.TaskReduce), Env: j.spec.Env,
		Modules: j.spec.Modules, Queued: time.Now().UnixNano(), Trace: j.mon.trace,
	}
	if !j.deadline.IsZero() {
		t.Deadline = j.deadline.UnixNano()
	}
	return t
}

func msgID(t *wire.Task) string {
	return t.Job + "-" + string(t.Kind[0]) + strconv.Itoa(t.Index) + "-" + strconv.Itoa(t.Attempt)
}

func (j *job) encodeTask(t *wire.Task) (bus.Message, error) {
	data, err := wire.Encode(wire.KindTask, t)
	if err != nil {
		return bus.Message{}, err
	}
	return bus.Message{Key: j.id, ID: msgID(t), Data: data}, nil
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
	msgs := make([]bus.Message, 0, batch)
	for i := 0; i < j.n; i += batch {
		msgs = msgs[:0]
		for k := i; k < i+batch && k < j.n; k++ {
			m, err := j.encodeTask(j.task(k, 1))
			if err != nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("encoding task %d: %v", k, err)}, k)
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
	}
	j.markPublished()
	if j.n > 0 {
		j.published(j.n)
	}
	if j.spec.Kind == wire.JobMapReduce && j.n == 0 {
		j.requestEnd("", nil, 0) // wakes the loop to start the reducer of an empty map
	}
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
	if !j.deadline.IsZero() {
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
				if j.c.ctx.Err() != nil {
					return // coordinator closing
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
		case <-tick.C:
			st := j.snapshot()
			if after := j.c.cfg.StallAfter; after > 0 && j.c.cfg.Hooks.Published != nil {
				idle := time.Since(time.Unix(0, j.lastEvent.Load()))
				if out := st.Total - st.Done - st.Failed; out > 0 && idle > after && time.Since(lastStallCall) > after {
					lastStallCall = time.Now()
					j.c.log.Warn("no event for a while: asking the compute backend for runtimes again", "job", j.id, "outstanding", out, "idle", idle.Round(time.Second))
					j.c.wg.Add(1)
					go func() { defer j.c.wg.Done(); j.published(out) }()
				}
			}
			if st != lastProgress {
				lastProgress = st
				if data, err := wire.Encode(wire.KindResp, wire.Response{Status: &st}); err == nil {
					_ = j.c.bus.Notify(j.ctx, wire.ProgressSubject(j.id), data)
				}
			}
		case <-j.c.ctx.Done():
			return
		}
		if j.snapshot().State.Terminal() {
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
		j.onEvent(evs[i])
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

func (j *job) onEvent(ev wire.Event) {
	if ev.Job != j.id {
		return
	}
	if ev.Kind == wire.TaskReduce {
		j.onReduceEvent(&ev)
		return
	}
	i := ev.Task
	if i < 0 || i >= j.n {
		j.c.log.Warn("ignoring event for a task the job does not have", "job", j.id, "task", i)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.state[i]
	if st == stDone || st == stFailed {
		return // duplicate: the first terminal event wins
	}
	cur := int(j.attempt[i]) + 1
	switch ev.Type {
	case wire.EventStarted:
		if st == stQueued && ev.Attempt == cur {
			j.state[i] = stRunning
			j.status.Running++
		}
	case wire.EventDone:
		if st == stRunning {
			j.status.Running--
		}
		j.state[i] = stDone
		j.results[i] = ev.Result
		if ev.ResultRef != "" {
			j.results[i] = refValue(ev.ResultRef)
		}
		j.status.Done++
		j.taskDone(&ev)
		if j.spec.Kind == wire.JobMapReduce {
			j.mapsDone++
			j.feed(i, &ev)
		}
	case wire.EventFailed:
		if ev.Attempt < cur {
			return // a stale attempt; a newer one is queued
		}
		if st == stRunning {
			j.status.Running--
		}
		if ev.Error != nil && ev.Error.Retryable && cur <= j.spec.Retries && ev.Error.Kind != wire.ErrCancelled {
			j.attempt[i]++
			j.state[i] = stQueued
			j.status.Retried++
			t := j.task(i, cur+1)
			go j.enqueue(t)
			j.c.log.Info("retrying task", "job", j.id, "task", i, "attempt", cur+1, "error", ev.Error.Error())
			return
		}
		j.state[i] = stFailed
		j.status.Failed++
		j.taskFailed(&ev)
		e := ev.Error
		if e == nil {
			e = &wire.TaskError{Kind: wire.ErrInternal, Message: "task failed without an error"}
		}
		j.mu.Unlock()
		j.finish(j.failureState(e), e, i)
		j.mu.Lock()
	}
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
	if err == nil {
		err = j.c.bus.Enqueue(j.ctx, pool, m)
	}
	if err != nil && j.ctx.Err() == nil {
		j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("re-publishing task %d: %v", t.Index, err)}, t.Index)
	}
	if err == nil && t.Attempt > 1 {
		j.tel().Metrics.Retried(j.ctx)
	} else if err == nil {
		j.tel().Metrics.Published(j.ctx, 1)
	}
	if err == nil && (pool == j.spec.Pool || pool == wire.ReducePool(j.spec.Pool)) {
		j.published(1)
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
	j.mu.Lock()
	if j.status.State.Terminal() {
		j.mu.Unlock()
		return
	}
	j.status.State = state
	j.status.Error = e
	if task >= 0 && e != nil {
		j.status.FailedTask = task
	}
	j.status.Ended = time.Now().UnixNano()
	j.ended = time.Now()
	j.status.LatencyP50us, j.status.LatencyP99us = percentiles(j.lat)
	st := j.status
	j.inputs = nil // free the inputs; results stay for Retention
	j.mu.Unlock()

	bctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 10*time.Second)
	defer cancel()
	if state != wire.StateDone {
		if p, ok := j.c.bus.(bus.Purger); ok {
			if err := p.Purge(bctx, j.spec.Pool, j.id); err != nil {
				j.c.log.Warn("purging the job's queued tasks", "job", j.id, "err", err)
			}
		}
		if data, err := wire.Encode(wire.KindCancel, wire.Cancel{Job: j.id, Reason: string(state)}); err == nil {
			_ = j.c.bus.Notify(bctx, "cancel", data)
		}
	}
	if data, err := wire.Encode(wire.KindEnd, wire.End{Status: st}); err == nil {
		if err := j.c.bus.Publish(bctx, wire.JobEndSubject(j.id), bus.Message{Data: data, ID: j.id + "-end"}); err != nil {
			j.c.log.Error("recording the job's end", "job", j.id, "err", err)
		}
	}
	if data, err := wire.Encode(wire.KindResp, wire.Response{Status: &st}); err == nil {
		_ = j.c.bus.Notify(bctx, wire.ProgressSubject(j.id), data)
	}
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
	j.cancel()
}

func percentiles(lat []int64) (p50, p99 int64) {
	if len(lat) == 0 {
		return 0, 0
	}
	s := append([]int64(nil), lat...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	p50 = s[len(s)/2] / 1000
	p99 = s[(len(s)*99)/100] / 1000
	if p50 == 0 {
		p50 = 1
	}
	if p99 == 0 {
		p99 = 1
	}
	return p50, p99
}

func (j *job) snapshot() wire.JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status
}

func (j *job) endedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ended
}

func (j *job) page(offset, limit, maxBytes int) (wire.Response, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.status
	resp := wire.Response{Status: &st}
	if st.State != wire.StateDone {
		return resp, nil
	}
	var all []wire.Value
	switch {
	case j.spec.Kind == wire.JobCall:
		resp.Results, resp.Total = j.results[:1], 1
		return resp, nil
	case j.spec.Kind == wire.JobMapReduce && !j.spec.ReducerOnePerObject:
		resp.Results, resp.Total = j.rResults[:1], 1
		return resp, nil
	case j.spec.Kind == wire.JobMapReduce:
		all = j.rResults
	default:
		all = j.results
	}
	resp.Total, resp.List = len(all), true
	if offset < 0 || offset > len(all) {
		return resp, fmt.Errorf("result offset %d out of range 0..%d", offset, len(all))
	}
	size := 0
	for k := offset; k < len(all); k++ {
		if limit > 0 && k-offset >= limit {
			break
		}
		size += len(all[k]) + 8
		if maxBytes > 0 && size > maxBytes && k > offset {
			break
		}
		resp.Results = append(resp.Results, all[k])
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

// enqueueRetrying publishes a batch, retrying a few times on errors other
// than a message too large: a broker may refuse the first declaration of
// a queue that runtimes create at the same time. Tasks carry message ids,
// so a broker that deduplicates drops the copies of a retried batch; on
// one that does not, a task may be queued twice (its first outcome wins).
func (j *job) enqueueRetrying(pool string, msgs []bus.Message) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if err = j.c.bus.Enqueue(j.ctx, pool, msgs...); err == nil || errors.Is(err, bus.ErrTooLarge) || j.ctx.Err() != nil {
			return err
		}
		j.c.log.Warn("publishing tasks failed; retrying", "job", j.id, "attempt", attempt+1, "err", err)
		select {
		case <-time.After(time.Duration(200<<attempt) * time.Millisecond):
		case <-j.ctx.Done():
			return j.ctx.Err()
		}
	}
	return err
}
