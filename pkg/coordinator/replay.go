package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/skeinrun/skein/pkg/telemetry"
)

// A finished job's results live in the memory of the coordinator that
// owned it, and on the event stream. When a coordinator is asked for the
// results of a finished job it does not hold (its owner died, or was
// restarted, after the end), it rebuilds them from the stream: it replays
// the job's events from its spec's position up to its end record through
// the same state machine the owner ran (the first terminal event of each
// published attempt decides), and takes the status from the end record.
// Nothing is published, and the telemetry does not count the tasks again.

// quiet is the telemetry of replays.
var quiet = telemetry.Off()

// replay rebuilds the results of finished job id; e is what the job log
// says of it. Concurrent calls for one job share one replay.
func (c *Coordinator) replay(ctx context.Context, id string, e entry) (*job, error) {
	if e.end == nil {
		return nil, fmt.Errorf("job %s has not ended", id)
	}
	c.mu.Lock()
	j := c.jobs[id]
	c.mu.Unlock()
	if j == nil || j.abandoned.Load() {
		spec, err := c.readSpec(ctx, id, e.spec)
		if err != nil {
			return nil, fmt.Errorf("reading the spec of job %s to rebuild its results: %w", id, err)
		}
		if spec.Monitor == MonitorPoll {
			return nil, fmt.Errorf("%w %q: the results of a poll-mode job are gone with the coordinator that ran it", ErrUnknownJob, id)
		}
		nj, err := newJob(ctx, c, spec)
		if err != nil {
			return nil, err
		}
		nj.recovered, nj.wasPublished, nj.from = true, true, e.spec
		nj.replayEnd, nj.replayTo = e.end, e.endSeq
		c.mu.Lock()
		if old := c.jobs[id]; old != nil && !old.abandoned.Load() {
			j = old
		} else {
			c.jobs[id] = nj
			j = nj
		}
		c.mu.Unlock()
		if j == nj {
			if err := nj.start(); err != nil {
				c.mu.Lock()
				if c.jobs[id] == nj {
					delete(c.jobs, id)
				}
				c.mu.Unlock()
				nj.cancel() // releases whoever waits in rebuilt
				return nil, err
			}
			c.log.Info("rebuilding a finished job's results from the event stream", "job", id, "from", e.spec, "to", e.endSeq)
		} else {
			nj.cancel()
		}
	}
	select {
	case <-j.done:
		return j, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// rebuilt waits, for a job that is a replay, until the replay has
// rebuilt it: until then its status is not the job's (a job being rebuilt
// ended long ago, but reads "running" with part of its results). Nil at
// once for any other job. A replay that could not start is an error: the
// request may be sent again.
func (j *job) rebuilt(ctx context.Context) error {
	if j.replayEnd == nil {
		return nil
	}
	select {
	case <-j.done:
		return nil
	case <-j.ctx.Done():
		select {
		case <-j.done: // a replay's end cancels its context too
			return nil
		default:
			return fmt.Errorf("job %s: rebuilding its results from the event stream failed; ask again", j.id)
		}
	case <-ctx.Done():
		return fmt.Errorf("job %s: waiting for its results to be rebuilt from the event stream: %w", j.id, ctx.Err())
	}
}

// endReplay ends a replay with the status of the job's end record.
func (j *job) endReplay() {
	j.mu.Lock()
	if j.status.State.Terminal() {
		j.mu.Unlock()
		return
	}
	st := *j.replayEnd
	st.From = j.from
	j.status = st
	j.ended = time.Now()
	j.mu.Unlock()
	close(j.done)
	j.cancel()
}
