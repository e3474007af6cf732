package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// The aggregator: map results of a mapreduce job are forwarded to their
// reduce group's feed subject on the event stream as they land. In
// streaming mode the group's reducer task is queued with the group's
// first result and reads the feed while the maps still run; in barrier
// mode it is queued only once every map is done. The feed is durable and
// replayable, so a reducer that crashes and is redelivered reads every
// result again; the last feed message of a group carries the count.

// feedFlushSize is how many results are batched into one feed message.
const feedFlushSize = 256

// feed buffers map result i for its group. Called with j.mu held.
func (j *job) feed(i int, ev *wire.Event) {
	g := j.group(i)
	item := wire.FeedItem{Index: i, Value: ev.Result, Ref: ev.ResultRef, Finished: ev.Finished}
	if j.objs != nil {
		item.Obj = j.objs[i]
	}
	j.feedBuf[g] = append(j.feedBuf[g], item)
	j.groupFed[g]++
	if j.streaming() && !j.reducerQueued[g] {
		j.reducerQueued[g] = true
		j.spawnEnqueue(j.reduceTask(g, 1))
	}
	if !j.streaming() && j.mapsDone == j.n {
		for g := range j.reducerQueued {
			if !j.reducerQueued[g] {
				j.reducerQueued[g] = true
				j.spawnEnqueue(j.reduceTask(g, 1))
			}
		}
	}
}

// queueReducers starts the reducers of groups that get no input.
func (j *job) queueReducers() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for g := range j.reducerQueued {
		if !j.reducerQueued[g] {
			j.reducerQueued[g] = true
			j.spawnEnqueue(j.reduceTask(g, 1))
		}
	}
}

// flushFeeds publishes buffered results: every group's buffer when all
// is true, else only full buffers. A group's last batch carries EOS.
func (j *job) flushFeeds(all bool) {
	if j.replayEnd != nil {
		return // a replay publishes nothing
	}
	type out struct {
		g    int
		feed wire.Feed
	}
	var outs []out
	j.mu.Lock()
	for g := range j.feedBuf {
		buf := j.feedBuf[g]
		eos := !j.eosSent[g] && j.groupFed[g] == j.groupSize[g]
		if len(buf) == 0 && !eos {
			continue
		}
		if !all && len(buf) < feedFlushSize && !eos {
			continue
		}
		if eos {
			j.eosSent[g] = true
		}
		outs = append(outs, out{g, wire.Feed{Job: j.id, Group: g, Items: buf, EOS: eos, Count: j.groupSize[g]}})
		j.feedBuf[g] = nil
	}
	j.mu.Unlock()
	for _, o := range outs {
		select {
		case j.feeds <- o.feed:
		case <-j.ctx.Done():
			return
		}
	}
}

// feeder publishes feed batches off the event loop, so that forwarding
// never delays the next event. Order does not matter to a reducer: it
// counts distinct inputs up to the count the end-of-stream mark carries.
func (j *job) feeder() {
	for {
		select {
		case f := <-j.feeds:
			if !j.acting() {
				return
			}
			if err := j.publishFeed(f.Group, &f); err != nil {
				if j.ctx.Err() == nil {
					j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: fmt.Sprintf("forwarding results to reducer %d: %v", f.Group, err)}, -1)
				}
				return
			}
		case <-j.ctx.Done():
			return
		}
	}
}

func (j *job) publishFeed(g int, f *wire.Feed) error {
	data, err := wire.Encode(wire.KindFeed, f)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(j.ctx, 30*time.Second)
	defer cancel()
	m := bus.Message{Data: data}
	j.c.sign(&m)
	if err := j.c.bus.Publish(ctx, wire.FeedSubject(j.id, g), m); err != nil {
		if len(f.Items) > 1 && isTooLarge(err) {
			// Split and retry: a batch of large results may not fit.
			half := len(f.Items) / 2
			a := wire.Feed{Job: f.Job, Group: f.Group, Items: f.Items[:half], Count: f.Count}
			b := wire.Feed{Job: f.Job, Group: f.Group, Items: f.Items[half:], EOS: f.EOS, Count: f.Count}
			if err := j.publishFeed(g, &a); err != nil {
				return err
			}
			return j.publishFeed(g, &b)
		}
		return err
	}
	return nil
}

func isTooLarge(err error) bool { return errors.Is(err, bus.ErrTooLarge) }

// spawnEnqueue publishes t off the event loop.
func (j *job) spawnEnqueue(t *wire.Task) { j.spawn(func() { j.enqueue(t) }) }
