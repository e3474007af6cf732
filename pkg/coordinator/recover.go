package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Recovery: a coordinator that starts reads the job log (the spec of every
// job, the marker that its tasks were all published, its end record) over
// the last window, and takes up every job that has not ended. It knows
// where the log ends before it decides anything: it records a mark on the
// job log and reads until the mark comes back (the stream is totally
// ordered, so every record stored before the mark has been read by then),
// however long other jobs' records keep the log busy and however quiet it
// is. The job's state is rebuilt by replaying its events from its spec's
// position, as any job's is; tasks that had not reached the queue are
// published again once that replay has caught up (tasks carry a message
// id, so a broker that deduplicates drops the ones that had). Delivery
// stays at least once: a task whose outcome was lost with the coordinator
// may run twice, and the first terminal event wins.

// Recover takes up the unfinished jobs submitted within window and
// returns their ids. Call it once, before Serve.
func (c *Coordinator) Recover(ctx context.Context, window time.Duration) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log, err := c.bus.Subscribe(ctx, "job.>", bus.SubscribeOptions{Since: time.Now().Add(-window)})
	if err != nil {
		return nil, fmt.Errorf("reading the job log: %w", err)
	}
	mark, err := c.bus.PublishSeq(ctx, wire.JobLogMarkSubject("recovery-"+NewJobID()), bus.Message{})
	if err != nil {
		return nil, fmt.Errorf("marking the end of the job log: %w", err)
	}
	specs := map[string]*wire.JobSpec{}
	from := map[string]uint64{}
	var order []string
	ended, published := map[string]bool{}, map[string]bool{}
	for done := false; !done; {
		var m bus.Message
		select {
		case msg, ok := <-log:
			if !ok {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errors.New("reading the job log: the subscription closed before the log's end")
			}
			m = msg
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		done = m.Seq >= mark
		parts := strings.Split(m.Subject, ".")
		if len(parts) != 3 {
			continue
		}
		id := parts[1]
		if parts[2] != "mark" && !c.signedByUs(m) {
			c.log.Warn("recovery: ignoring a job log record the coordinator did not sign", "job", id, "record", parts[2])
			continue
		}
		switch parts[2] {
		case "spec":
			var s wire.JobSpec
			if err := wire.Decode(m.Data, wire.KindJob, &s); err != nil {
				c.log.Warn("recovery: skipping a malformed job spec", "job", id, "err", err)
				continue
			}
			if _, dup := specs[id]; dup {
				continue // the first record of a spec is where its job starts
			}
			order = append(order, id)
			specs[id], from[id] = &s, m.Seq
		case "published":
			var p wire.Published
			if err := wire.Decode(m.Data, wire.KindPublished, &p); err != nil || p.Job != id {
				c.log.Warn("recovery: ignoring a malformed record that a job's tasks are published", "job", id, "err", err)
				continue
			}
			published[id] = true
		case "end":
			if _, err := wire.DecodeEnd(m.Data, id); err != nil {
				c.log.Warn("recovery: ignoring a malformed end record", "job", id, "err", err)
				continue
			}
			ended[id] = true
		}
	}
	var taken []string
	for _, id := range order {
		spec := specs[id]
		if ended[id] || spec.ID != id {
			continue
		}
		j, err := newJob(ctx, c, spec)
		if err != nil {
			c.log.Warn("recovery: cannot take up job", "job", id, "err", err)
			continue
		}
		j.recovered, j.wasPublished, j.from = true, published[id], from[id]
		c.mu.Lock()
		if _, have := c.jobs[id]; have {
			c.mu.Unlock()
			continue
		}
		c.jobs[id] = j
		c.mu.Unlock()
		if err := j.start(); err != nil {
			c.mu.Lock()
			delete(c.jobs, id)
			c.mu.Unlock()
			c.log.Warn("recovery: cannot take up job", "job", id, "err", err)
			continue
		}
		c.log.Info("job taken up after a restart", "job", id, "tasks", j.n, "all published before", j.wasPublished, "from", j.from)
		taken = append(taken, id)
	}
	c.log.Info("job log read to its end", "mark", mark, "jobs", len(order), "taken up", len(taken))
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

// markPublished records on the job log that every task is on the queue.
func (j *job) markPublished() {
	data, err := wire.Encode(wire.KindPublished, wire.Published{Job: j.id, Tasks: j.n})
	if err == nil {
		m := bus.Message{Data: data, ID: j.id + "-published"}
		j.c.sign(&m)
		err = j.c.bus.Publish(j.ctx, wire.JobPublishedSubject(j.id), m)
	}
	if err != nil && j.ctx.Err() == nil {
		j.c.log.Warn("recording that the job's tasks are published", "job", j.id, "err", err)
	}
}

// republish waits until the replay of a recovered job's events has
// caught up (catchUp), then publishes the tasks that have no outcome yet.
func (j *job) republish() {
	select {
	case <-j.caughtUp:
	case <-j.ctx.Done():
		return
	}
	j.mu.Lock()
	todo, attempts := j.maps.queued()
	j.mu.Unlock()
	for start := 0; start < len(todo); start += 500 {
		var msgs []bus.Message
		for k, i := range todo[start:min(start+500, len(todo))] {
			t, err := j.task(i, attempts[start+k])
			if err != nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "re-publishing " + err.Error()}, i)
				return
			}
			m, err := j.encodeTask(t)
			if err != nil {
				return
			}
			msgs = append(msgs, m)
		}
		if err := j.c.bus.Enqueue(j.ctx, j.spec.Pool, msgs...); err != nil {
			if j.ctx.Err() == nil {
				j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "re-publishing tasks after a restart: " + err.Error()}, -1)
			}
			return
		}
	}
	j.markPublished()
	if len(todo) > 0 {
		j.published(len(todo))
	}
	j.c.log.Info("tasks re-published after a restart", "job", j.id, "tasks", len(todo))
}
