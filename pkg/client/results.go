package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// TaskResult is one task's outcome as it lands: its result (a reference
// to storage is resolved when the client can), or, for the task whose
// failure ended the job, its error.
type TaskResult struct {
	Index  int             `json:"index"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wire.TaskError `json:"error,omitempty"`
	// Finished is when the task's function ended, by its runtime's clock
	// (unix ns; 0 for the failing task's item, which comes from the job's
	// end).
	Finished int64 `json:"-"`
}

// ResultStream is a job's results as they land (Results).
type ResultStream struct {
	// C carries each task's result once, in the order the results were
	// recorded on the bus; it is closed when the job has ended and every
	// result before its end was sent, or when following it failed.
	C <-chan TaskResult

	mu  sync.Mutex
	st  wire.JobStatus
	err error
}

// Status is the job's final status once C is closed, or why following
// the job stopped.
func (s *ResultStream) Status() (wire.JobStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st, s.err
}

// Results follows the results of a map or call job as its tasks finish,
// instead of after the last one. It reads the job's task events from the
// job's position on the stream, in the order the coordinator reads them,
// and hands out each task's first result, which is the result the
// coordinator keeps. A subscription that the bus resumes after a
// disconnect gives no task twice. When the job's end record arrives, the
// events before it are read to the end and C is closed; a job that
// failed gives the failing task's error as its last item.
func (c *Client) Results(ctx context.Context, id string) (*ResultStream, error) {
	st, err := c.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Kind == wire.JobMapReduce {
		return nil, fmt.Errorf("job %s is a mapreduce job: its result is its reducers'; results stream from map and call jobs", id)
	}
	if st.From == 0 {
		return nil, fmt.Errorf("job %s: the coordinator did not report the job's stream position (it is older than this client)", id)
	}
	ctx, cancel := context.WithCancel(ctx)
	lctx, lcancel := context.WithCancel(ctx)
	live, err := c.subscribe(lctx, wire.TaskEvents(id), bus.SubscribeOptions{From: st.From})
	if err != nil {
		lcancel()
		cancel()
		return nil, err
	}
	out := make(chan TaskResult, 256)
	rs := &ResultStream{C: out}
	type ended struct {
		st  wire.JobStatus
		seq uint64
		err error
	}
	endc := make(chan ended, 1)
	go func() {
		s, seq, err := c.waitEnd(ctx, st)
		endc <- ended{s, seq, err}
	}()
	f := &follower{c: c, id: id, out: out, ctx: ctx}
	go func() {
		defer cancel()
		defer close(out)
		finish := func(s wire.JobStatus, err error) {
			rs.mu.Lock()
			rs.st, rs.err = s, err
			rs.mu.Unlock()
		}
		for {
			select {
			case m, ok := <-live:
				if !ok {
					if ctx.Err() != nil {
						finish(st, ctx.Err())
					} else {
						finish(st, fmt.Errorf("job %s: the bus closed the subscription to the job's events", id))
					}
					lcancel()
					return
				}
				if !f.take(m) {
					finish(st, ctx.Err())
					lcancel()
					return
				}
			case e := <-endc:
				lcancel()
				if e.err != nil {
					finish(st, e.err)
					return
				}
				// The rest of the events before the end record.
				if f.last+1 < e.seq {
					rest, err := c.subscribe(ctx, wire.TaskEvents(id), bus.SubscribeOptions{From: f.last + 1, To: e.seq - 1})
					if err != nil {
						finish(e.st, err)
						return
					}
					for m := range rest {
						if !f.take(m) {
							finish(e.st, ctx.Err())
							return
						}
					}
				}
				if e.st.Error != nil && e.st.FailedTask >= 0 && !f.seen(e.st.FailedTask) {
					select {
					case out <- TaskResult{Index: e.st.FailedTask, Error: e.st.Error}:
					case <-ctx.Done():
					}
				}
				finish(e.st, ctx.Err())
				return
			}
		}
	}()
	return rs, nil
}

// follower hands out the first result of each task of one job.
type follower struct {
	c    *Client
	id   string
	out  chan<- TaskResult
	ctx  context.Context
	done []uint64 // bit set of the tasks handed out
	last uint64   // stream position of the last message read
}

func (f *follower) seen(i int) bool {
	return i/64 < len(f.done) && f.done[i/64]&(1<<(i%64)) != 0
}

func (f *follower) mark(i int) {
	for i/64 >= len(f.done) {
		f.done = append(f.done, 0)
	}
	f.done[i/64] |= 1 << (i % 64)
}

// take hands out the new results of one event message; false when ctx
// ended first.
func (f *follower) take(m bus.Message) bool {
	if m.Seq > f.last {
		f.last = m.Seq
	}
	evs, err := coordinator.DecodeEvents(m.Data)
	if err != nil {
		f.c.log().Warn("ignoring a message on the job's event subject that is not an event", "job", f.id, "seq", m.Seq, "err", err)
		return true
	}
	for i := range evs {
		ev := &evs[i]
		if ev.Job != f.id || ev.Kind == wire.TaskReduce || ev.Type != wire.EventDone || ev.Task < 0 || ev.Attempt < 1 || f.seen(ev.Task) {
			continue
		}
		f.mark(ev.Task)
		v := ev.Result
		if ev.ResultRef != "" {
			ref, _ := json.Marshal(ev.ResultRef)
			v = append(wire.Value(refPrefix), append(ref, '}')...)
		}
		r := TaskResult{Index: ev.Task, Finished: ev.Finished}
		nv, err := f.c.resolve(f.ctx, v)
		if err != nil {
			r.Error = &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("fetching the result from storage: %v", err)}
		} else {
			r.Result = json.RawMessage(nullIfEmpty(nv))
		}
		select {
		case f.out <- r:
		case <-f.ctx.Done():
			return false
		}
	}
	return true
}

// JobEvents follows job events (CloudEvents, wire.JobEventsSubject): with
// a job id, that job's from its submission to its end event, after which
// the channel is closed (this asks the API for the job's position: the
// submitter's rights); with "", every job's of the namespace from since
// (zero: from now on) until ctx ends (a watcher's rights suffice).
func (c *Client) JobEvents(ctx context.Context, id string, since time.Time) (<-chan wire.CloudEvent, error) {
	opts := bus.SubscribeOptions{Since: since}
	subject := wire.JobEventsSubject("*")
	if id != "" {
		st, err := c.Status(ctx, id)
		if err != nil {
			return nil, err
		}
		if st.From == 0 {
			return nil, fmt.Errorf("job %s: the coordinator did not report the job's stream position (it is older than this client)", id)
		}
		subject, opts.From = wire.JobEventsSubject(id), st.From
	}
	ctx, cancel := context.WithCancel(ctx)
	ch, err := c.subscribe(ctx, subject, opts)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan wire.CloudEvent, 64)
	go func() {
		defer cancel()
		defer close(out)
		for m := range ch {
			var ev wire.CloudEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil || ev.SpecVersion == "" {
				c.log().Warn("ignoring a message on the job events subject that is not a CloudEvent", "seq", m.Seq, "err", err)
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
			if id != "" && ev.Subject == id && isEndEvent(ev.Type) {
				return
			}
		}
	}()
	return out, nil
}

func isEndEvent(typ string) bool {
	switch typ {
	case wire.JobEventDone, wire.JobEventFailed, wire.JobEventCancelled, wire.JobEventTimedOut:
		return true
	}
	return false
}
