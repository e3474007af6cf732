package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Recovery: a coordinator that starts reads the job log (the spec of every
// job, the marker that its tasks were all published, its end record) over
// the last window, and takes up every job that has not ended. The job's
// state is rebuilt by replaying its events from the stream, as any job's
// is; tasks that had not reached the queue are published again (tasks
// carry a message id, so a broker that deduplicates drops the ones that
// had). Delivery stays at least once: a task whose outcome was lost with
// the coordinator may run twice, and the first terminal event wins.

// quiet is how long a replay may go without a message before it is taken
// as caught up.
const quiet = 500 * time.Millisecond

// Recover takes up the unfinished jobs submitted within window and
// returns their ids. Call it once, before Serve.
func (c *Coordinator) Recover(ctx context.Context, window time.Duration) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log, err := c.bus.Subscribe(ctx, "job.>", bus.SubscribeOptions{Since: time.Now().Add(-window)})
	if err != nil {
		return nil, fmt.Errorf("reading the job log: %w", err)
	}
	specs := map[string]*wire.JobSpec{}
	var order []string
	ended, published := map[string]bool{}, map[string]bool{}
	idle := time.NewTimer(quiet)
	defer idle.Stop()
read:
	for {
		select {
		case m, ok := <-log:
			if !ok {
				break read
			}
			idle.Reset(quiet)
			parts := strings.Split(m.Subject, ".")
			if len(parts) != 3 {
				continue
			}
			id := parts[1]
			switch parts[2] {
			case "spec":
				var s wire.JobSpec
				if err := wire.Decode(m.Data, wire.KindJob, &s); err != nil {
					c.log.Warn("recovery: skipping a malformed job spec", "job", id, "err", err)
					continue
				}
				if _, dup := specs[id]; !dup {
					order = append(order, id)
				}
				specs[id] = &s
			case "published":
				published[id] = true
			case "end":
				ended[id] = true
			}
		case <-idle.C:
			break read
		case <-ctx.Done():
			return nil, ctx.Err()
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
		j.recovered, j.wasPublished = true, published[id]
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
		c.log.Info("job taken up after a restart", "job", id, "tasks", j.n, "all published before", j.wasPublished)
		taken = append(taken, id)
	}
	return taken, nil
}

// markPublished records on the job log that every task is on the queue.
func (j *job) markPublished() {
	data, err := wire.Encode(wire.KindPublished, wire.Published{Job: j.id, Tasks: j.n})
	if err == nil {
		err = j.c.bus.Publish(j.ctx, wire.JobPublishedSubject(j.id), bus.Message{Data: data, ID: j.id + "-published"})
	}
	if err != nil && j.ctx.Err() == nil {
		j.c.log.Warn("recording that the job's tasks are published", "job", j.id, "err", err)
	}
}

// republish waits until the replay of a recovered job's events is caught
// up, then publishes the tasks that have no outcome yet.
func (j *job) republish() {
	j.lastEvent.Store(time.Now().UnixNano())
	for time.Since(time.Unix(0, j.lastEvent.Load())) < quiet {
		select {
		case <-time.After(quiet / 5):
		case <-j.ctx.Done():
			return
		}
	}
	j.mu.Lock()
	todo, attempts := j.maps.queued()
	j.mu.Unlock()
	for start := 0; start < len(todo); start += 500 {
		var msgs []bus.Message
		for k, i := range todo[start:min(start+500, len(todo))] {
			m, err := j.encodeTask(j.task(i, attempts[start+k]))
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
