package runtime

import (
	"context"
	"sync"
	"time"

	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// pipeliner is a host that takes further calls on a slot while one runs
// there, and runs them in order, one at a time (pyhost: the slot's
// interpreter gets them pipelined on its request pipe), so that a slot's
// short calls do not each cost a round trip to the process that runs them.
type pipeliner interface {
	// Pipelines reports whether calls on one slot may be made
	// concurrently.
	Pipelines() bool
}

const (
	// pipeBudget bounds the work a slot queues behind the call it runs:
	// depth × the longest of its recent calls. Calls longer than that
	// run one at a time, as on a host that does not pipeline.
	pipeBudget = 2 * time.Millisecond
	// maxPipe caps the calls in flight on one slot.
	maxPipe = 16
	// pipeSeen is how many calls a slot observes before it pipelines.
	pipeSeen = 8
)

// slotPipe is one slot's calls in flight on a pipelining host and what it
// observed of their run times.
type slotPipe struct {
	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	last     time.Time // when its last call ended (or the first of the in-flight ones started)
	recent   [pipeSeen]time.Duration
	seen     int
	// work hands a pipelined call to an idle worker of the slot: its
	// goroutines live until the runtime stops (closePipes), so that each
	// call does not start a goroutine and grow its stack again.
	work chan func()
}

func (r *Runtime) slotPipe(slot int) *slotPipe {
	if p, ok := r.pipes.Load(slot); ok {
		return p.(*slotPipe)
	}
	p := &slotPipe{work: make(chan func())}
	p.cond = sync.NewCond(&p.mu)
	got, _ := r.pipes.LoadOrStore(slot, p)
	return got.(*slotPipe)
}

// depth is how many calls the slot may have in flight. p.mu is held.
func (p *slotPipe) depth() int {
	if p.seen < pipeSeen {
		return 1
	}
	var worst time.Duration
	for _, d := range p.recent {
		worst = max(worst, d)
	}
	return min(max(int(pipeBudget/max(worst, time.Microsecond)), 1), maxPipe)
}

// pipelines reports whether t's function runs on a pipelining host.
func (r *Runtime) pipelines(t *wire.Task) bool {
	ref, err := fn.ParseRef(t.Function)
	if err != nil || ref.Scheme == "go" {
		return false
	}
	h, ok := r.cfg.Hosts[ref.Scheme].(pipeliner)
	return ok && h.Pipelines()
}

// run executes t on slot. On a pipelining host, while the slot's recent
// calls were short, it hands t to the host at once even if the slot's
// previous call still runs (a goroutine a call, each with its own
// context, lease, log and event), and returns, so that the slot's loop
// takes the next task; the host queues it behind the running one. A
// slot whose call runs past pipeBudget takes nothing more until its calls
// are done, so that tasks do not pile up behind a long one while another
// slot is free. Other tasks run inline, once the slot's pipelined calls
// are done.
func (r *Runtime) run(ctx context.Context, slot int, h *heldTask, t *wire.Task) {
	p := r.slotPipe(slot)
	pipe := r.pipelines(t)
	p.mu.Lock()
	for p.inflight > 0 && (!pipe || p.inflight >= p.depth() || time.Since(p.last) > pipeBudget) {
		p.cond.Wait()
	}
	p.inflight++
	if p.inflight == 1 {
		p.last = time.Now()
	}
	inline := !pipe || p.depth() == 1
	p.mu.Unlock()
	if inline {
		r.execute(ctx, slot, h, t)
		p.ended(pipe)
		return
	}
	job := func() {
		r.execute(ctx, slot, h, t)
		p.ended(true)
	}
	select {
	case p.work <- job:
	default:
		r.pending.Add(1)
		go func() {
			defer r.pending.Done()
			for ; job != nil; job = <-p.work {
				job()
			}
		}()
	}
}

// closePipes ends the slots' workers once their calls are done. Run
// calls it when its slots have stopped taking tasks.
func (r *Runtime) closePipes() {
	r.pipes.Range(func(k, v any) bool {
		r.pipes.Delete(k)
		close(v.(*slotPipe).work)
		return true
	})
}

// ended records the end of a call on the slot: its run time is the time
// since the slot's previous call ended (calls in flight run in order) or
// since it started.
func (p *slotPipe) ended(observe bool) {
	now := time.Now()
	p.mu.Lock()
	if observe {
		p.recent[p.seen%pipeSeen] = now.Sub(p.last)
		p.seen++
	}
	p.last = now
	p.inflight--
	p.cond.Broadcast()
	p.mu.Unlock()
}
