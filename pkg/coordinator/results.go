package coordinator

import (
	"context"
	"fmt"
	"slices"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// resultStore keeps a map job's results compactly: the results' JSON one
// after the other in one arena, and for each task where its result lies
// (8 bytes per task). Once the arena holds limit bytes, later results stay
// where they already are, on the event stream: the store keeps only the
// position of the event message that carried each of them (8 more bytes
// per task from then on) and reads them back from the stream when a page
// of results asks for them (page). A million null results cost about
// 12 MB; results of any size cost at most limit bytes of memory.
//
// A result on the stream is readable while the stream keeps the job's
// events (natsbus EventRetention, RabbitMQ StreamMaxAge; both a day by
// default), which is longer than a finished job is kept (Retention).
type resultStore struct {
	limit int64
	arena []byte
	off   []uint32
	n     []uint32
	seq   []uint64 // nil until the arena is full; 0: in the arena
}

func newResultStore(n int, limit int64) *resultStore {
	return &resultStore{limit: limit, off: make([]uint32, n), n: make([]uint32, n)}
}

// set records task i's result v, carried by the event message at stream
// position seq. A store without room keeps only seq (0 when the message
// has no position: then the result is kept in the arena regardless).
func (r *resultStore) set(i int, v wire.Value, seq uint64) {
	if len(v) > 1<<32-1 {
		v = v[:0] // cannot happen: no bus carries a message this large
	}
	r.n[i] = uint32(len(v))
	if seq != 0 && (int64(len(r.arena)+len(v)) > r.limit || len(r.arena)+len(v) > 1<<32-1) {
		if r.seq == nil {
			r.seq = make([]uint64, len(r.off))
		}
		r.seq[i] = seq
		return
	}
	r.off[i] = uint32(len(r.arena))
	r.arena = append(r.arena, v...)
}

// size is the length of task i's result.
func (r *resultStore) size(i int) int { return int(r.n[i]) }

// get returns task i's result when it is in memory; ok is false when it
// is on the stream.
func (r *resultStore) get(i int) (v wire.Value, ok bool) {
	if r.seq != nil && r.seq[i] != 0 {
		return nil, false
	}
	if r.n[i] == 0 {
		return nil, true
	}
	o := r.off[i]
	return wire.Value(r.arena[o : o+r.n[i] : o+r.n[i]]), true
}

// fromStream reads the results of tasks from the job's event messages at
// the positions pos (pos[k] is task tasks[k]'s), in one pass over the
// stream from the smallest position to the largest. A task's result is
// the one of the first done event for it in its message, which is the
// event the job recorded.
func fromStream(ctx context.Context, b bus.Bus, job string, tasks []int, pos []uint64) (map[int]wire.Value, error) {
	want := make(map[uint64][]int, len(tasks))
	for k, p := range pos {
		want[p] = append(want[p], tasks[k])
	}
	lo, hi := slices.Min(pos), slices.Max(pos)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.Subscribe(ctx, wire.TaskEvents(job), bus.SubscribeOptions{From: lo, To: hi})
	if err != nil {
		return nil, fmt.Errorf("reading results from the event stream: %w", err)
	}
	out := make(map[int]wire.Value, len(tasks))
	for m := range ch {
		ts, ok := want[m.Seq]
		if !ok {
			continue
		}
		evs, err := DecodeEvents(m.Data)
		if err != nil {
			return nil, fmt.Errorf("reading results from the event stream: position %d: %w", m.Seq, err)
		}
		for _, t := range ts {
			for e := range evs {
				ev := &evs[e]
				if ev.Task == t && ev.Type == wire.EventDone && ev.Kind != wire.TaskReduce {
					v := ev.Result
					if ev.ResultRef != "" {
						v = refValue(ev.ResultRef)
					}
					out[t] = v
					break
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(out) != len(tasks) {
		return nil, fmt.Errorf("reading results from the event stream: found %d of %d results at positions %d..%d (older than the stream's retention?)", len(out), len(tasks), lo, hi)
	}
	return out, nil
}
