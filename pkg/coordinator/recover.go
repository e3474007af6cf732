package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Recovery: a coordinator that starts reads the job log (the spec of every
// job, how far the publishing of its tasks got, its end record) over
// the last window, and takes up every job that has not ended and whose
// owner is dead (own.go: several coordinators share a namespace). It knows
// where the log ends before it decides anything: it records a mark on the
// job log and reads until the mark comes back (the stream is totally
// ordered, so every record stored before the mark has been read by then),
// however long other jobs' records keep the log busy and however quiet it
// is. The job's state is rebuilt by replaying its events from its spec's
// position, as any job's is; tasks that had not reached the queue are
// published again once that replay has caught up. The job log's queued
// records (markQueued) say which first attempts had: those are not
// published again, so only the batch being published when the owner died
// (and retries it had just published) can be queued twice. Delivery stays
// at least once: such a task, or one whose outcome was lost with the
// coordinator, may run twice, and the first terminal event wins.

// Recover joins the namespace's coordinators and takes up the unfinished
// jobs submitted within window whose owner is dead; it returns their ids.
// Call it once, before Serve.
//
// It reads the job log to its end (a mark it records), then keeps
// following it (owner changes, ends) and starts the coordinator's
// heartbeats (own.go). A job whose owner is not heard within the lease is
// claimed; Recover returns once every unfinished job is held by a live
// coordinator, this one or another, or after three leases.
func (c *Coordinator) Recover(ctx context.Context, window time.Duration) ([]string, error) {
	o := c.own
	o.mu.Lock()
	joined := o.joined
	o.mu.Unlock()
	if joined {
		return nil, errors.New("the coordinator has already joined its namespace")
	}
	sctx, scancel := context.WithCancel(c.ctx)
	stop := context.AfterFunc(ctx, scancel) // until the log is read to its end
	ok := false
	defer func() {
		stop()
		if !ok {
			scancel()
		}
	}()
	// The log's subscription has a context of its own: refollow replaces
	// it.
	lctx, lcancel := context.WithCancel(sctx)
	defer func() {
		if !ok {
			lcancel()
		}
	}()
	log, err := c.bus.Subscribe(lctx, "job.>", bus.SubscribeOptions{Since: time.Now().Add(-window)})
	if err != nil {
		return nil, fmt.Errorf("reading the job log: %w", err)
	}
	alive, err := c.beats().Listen(sctx, wire.AliveSubject)
	if err != nil {
		return nil, fmt.Errorf("listening to the coordinators' heartbeats: %w", err)
	}
	mark, err := c.bus.PublishSeq(ctx, wire.JobLogMarkSubject("recovery-"+NewJobID()), bus.Message{})
	if err != nil {
		return nil, fmt.Errorf("marking the end of the job log: %w", err)
	}
	for done := false; !done; {
		select {
		case m, open := <-log:
			if !open {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errors.New("reading the job log: the subscription closed before the log's end")
			}
			c.record(m)
			done = m.Seq >= mark
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !stop() {
		return nil, ctx.Err()
	}
	ok = true
	o.mu.Lock()
	o.joined, o.valid = true, time.Now().Add(o.fence)
	type start struct {
		id   string
		term int
	}
	var open []start
	for id, e := range o.ledger {
		if e.end == nil {
			open = append(open, start{id, e.term})
		}
	}
	o.mu.Unlock()
	o.mu.Lock()
	o.stopFollower = lcancel
	gen := o.follower
	o.mu.Unlock()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.follow(gen, log) }()
	go func() { defer c.wg.Done(); c.heartbeats(alive) }()
	if sw, ok := c.bus.(bus.StoreWatcher); ok {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.watchStore(sw.StoreLost()) }()
	}

	// Wait until each job that was running is held by a live coordinator.
	settled := func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, s := range open {
			e := o.ledger[s.id]
			if e == nil || e.end != nil || e.claiming {
				if e != nil && e.claiming {
					return false
				}
				continue
			}
			m := o.members[e.owner]
			switch {
			case e.owner == o.id:
				if c.held(s.id) == nil {
					return false
				}
			case m != nil && m.ever && o.alive(e.owner):
			default:
				return false
			}
		}
		return true
	}
	limit := time.NewTimer(3 * beatsToDeath * o.beat)
	defer limit.Stop()
	tick := time.NewTicker(o.beat / 2)
	defer tick.Stop()
wait:
	for !settled() {
		select {
		case <-tick.C:
		case <-limit.C:
			c.log.Warn("recovery: some unfinished jobs are not held by a live coordinator yet")
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var taken []string
	for _, s := range open {
		if c.held(s.id) != nil {
			taken = append(taken, s.id)
		}
	}
	slices.Sort(taken)
	c.log.Info("job log read to its end", "mark", mark, "jobs", len(o.ledger), "unfinished", len(open), "taken up", len(taken), "coordinator", o.id)
	return taken, nil
}

// catchUp records a mark on the job's event subject (an empty batch of
// events, which the event loop handles as nothing) and returns the
// events channel to hand to the event loop instead of ev. The channel is
// unbuffered: once the mark has been taken by the loop, every event
// recorded before the job was taken up has been handled, and caughtUp is
// closed.
func (j *job) catchUp(ev <-chan bus.Message) (<-chan bus.Message, error) {
	data, err := wire.Encode(wire.KindEvents, wire.Events{})
	if err != nil {
		return nil, err
	}
	mark, err := j.c.bus.PublishSeq(j.ctx, wire.TaskEvents(j.id), bus.Message{Data: data})
	if err != nil {
		return nil, fmt.Errorf("marking the end of the job's events: %w", err)
	}
	j.caughtUp = make(chan struct{})
	out := make(chan bus.Message)
	j.c.wg.Add(1)
	go func() {
		defer j.c.wg.Done()
		defer close(out)
		caught := false
		for m := range ev {
			select {
			case out <- m:
			case <-j.ctx.Done():
				return
			}
			if !caught && m.Seq >= mark {
				caught = true
				close(j.caughtUp)
			}
		}
	}()
	return out, nil
}

// markPublished records on the job log that every task of the job is
// published: a coordinator taking the job over publishes none again.
func (j *job) markPublished() {
	j.allQueued.Store(true)
	j.logRecord(wire.JobPublishedSubject(j.id), wire.KindPublished, wire.Published{Job: j.id, Tasks: j.n}, "-published",
		"recording that the job's tasks are published")
}

// markQueued records on the job log what of the job is on its queues
// (wire.Queued: the first attempts of tasks 0 … Through-1, of the
// reducers of groups Reducers): a coordinator taking the job over does
// not queue those again. A record lost costs only duplicates after a
// takeover (what was queued since the last one runs twice).
func (j *job) markQueued(q wire.Queued) {
	q.Job = j.id
	j.logRecord(wire.JobQueuedSubject(j.id), wire.KindQueued, q, "", "recording what of the job is queued")
}

// logRecord publishes a signed record of the job on the job log (with
// message id job+idSuffix when idSuffix is set), logging a failure as
// what unless the job has ended.
func (j *job) logRecord(subject string, kind wire.Kind, body any, idSuffix, what string) {
	data, err := wire.Encode(kind, body)
	if err == nil {
		m := bus.Message{Data: data}
		if idSuffix != "" {
			m.ID = j.id + idSuffix
		}
		j.c.sign(&m)
		err = j.c.bus.Publish(j.ctx, subject, m)
	}
	if err != nil && j.ctx.Err() == nil {
		j.c.log.Warn(what, "job", j.id, "err", err)
	}
}

// republish waits until the replay of a recovered job's events has
// caught up (catchUp), then publishes the tasks that have no outcome yet,
// but for the first attempts the job log records as queued: those are on
// the queue, or held by a runtime that will settle them or lose them back
// to the queue, so publishing them again would run them twice.
func (j *job) republish() {
	select {
	case <-j.caughtUp:
	case <-j.ctx.Done():
		return
	}
	j.mu.Lock()
	todo, attempts := j.maps.queued()
	base := int64(j.mapsDone)
	j.mu.Unlock()
	waiting := len(todo) // not done; those left after the filter are published here
	k := 0
	for n, i := range todo {
		if i < j.wasQueued && attempts[n] == 1 {
			continue
		}
		todo[k], attempts[k] = i, attempts[n]
		k++
	}
	todo, attempts = todo[:k], attempts[:k]
	waiting -= len(todo) // queued before the takeover, not done yet
	batch := j.c.cfg.backlogBatch(500)
	announce := j.announcer(len(todo))
	for start := 0; start < len(todo); {
		next, ok := j.admit(int64(waiting+start), min(batch, len(todo)-start), base, announce)
		if !ok {
			return
		}
		end := start + next
		var msgs []bus.Message
		for k, i := range todo[start:end] {
			t, err := j.task(i, attempts[start+k])
			if err != nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "re-publishing " + err.Error()}, i)
				return
			}
			m, err := j.encodeTask(t)
			if err != nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("re-publishing task %d: encoding: %v", i, err)}, i)
				return
			}
			msgs = append(msgs, m)
		}
		if err := j.enqueueRetrying(j.spec.Pool, msgs); err != nil {
			if j.ctx.Err() == nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "re-publishing tasks after a restart: " + err.Error()}, -1)
			}
			return
		}
		start = end
	}
	j.markPublished()
	announce()
	j.c.log.Info("tasks re-published after a restart", "job", j.id, "tasks", len(todo))
}
