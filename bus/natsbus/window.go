package natsbus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
)

// windowExpiry is how long one pull request waits on an empty queue.
// A stopping consumer does not wait for its requests to expire: it
// abandons them, as stopping a jetstream iterator does, and hands back
// what they had already brought. A message the server sends to an
// abandoned request in the meantime comes back after its lease.
const windowExpiry = time.Second

// credit counts what a windowed consumer holds: messages asked for and
// not yet arrived, plus deliveries handed out and not yet settled.
type credit struct {
	mu   sync.Mutex
	held int
	err  error         // the last failed pull, for the pulling loop
	wake chan struct{} // a receive after a change
}

func (c *credit) add(n int, err error) {
	c.mu.Lock()
	c.held += n
	if err != nil {
		c.err = err
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// heldNow is what the window holds.
func (c *credit) heldNow() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

func (c *credit) state() (held int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held, err = c.held, c.err
	c.err = nil
	return held, err
}

// consumeWindow delivers the queue's messages while never holding more
// unsettled ones than the window: it asks the server (pull requests) only
// for what the window has room for, and a delivery frees its room when it
// is settled. Messages it pulled are handed over at once, so a reader
// that takes them at once and renews their leases keeps them all;
// nothing waits unrenewed in a client buffer. Requests are sent once a
// quarter of the window is free (or nothing is asked for), so that a
// flood of short tasks costs a pull request per quarter window.
//
// The requests are its own (puller), not the JetStream library's Fetch:
// a message goes from its request's subscription callback to the
// caller's channel directly. Fetch moved each message through two more
// goroutines and channels, and armed a timer and parsed the metadata of
// each: a tenth of a runtime's processor time in a flood of short tasks.
//
// A failing pull is retried as pump retries one: with backoff (pullRetry),
// the queue's consumer opened again (it may have been deleted), logged
// once per streak. A request that fails later (it ends in an error
// without a message) turns the next requests synchronous: each waits for
// its first message or its end, under the same backoff, until one
// succeeds.
func (b *Bus) consumeWindow(ctx context.Context, queue string, c jetstream.Consumer, o bus.QueueOptions, win *bus.Window) <-chan bus.Delivery {
	out := make(chan bus.Delivery)
	cr := &credit{wake: make(chan struct{}, 1)}
	pctx, cancel := context.WithCancel(ctx)
	pl := &puller{b: b, queue: queue, out: out, ctx: pctx, cr: cr, reqs: make(map[*pullReq]struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		defer pl.stop()
		defer cancel()
		go func() {
			select {
			case <-pctx.Done():
			case <-b.closed:
				cancel()
			}
		}()
		// cgen is the task stream's generation c was opened on (Bus.tasksGen),
		// seen the one the loop last acted on.
		cgen := b.tasksGen.Load()
		seen := cgen
		failures := 0
		p := pullRetry
		p.OnRetry = func(_ int, err error, wait time.Duration) {
			failures++
			if failures == 3 {
				b.log.Warn("natsbus: pull failing; retrying with backoff", "queue", queue, "err", err, "wait", wait)
			}
		}
		// pull asks for n messages; sync, it waits for the request's
		// first message or its end, and returns the request's error.
		pull := func(n int, sync bool) error {
			if c == nil {
				rctx, rcancel := context.WithTimeout(pctx, reopenTimeout)
				b.forgetConsumer(queue)
				nc, err := b.consumer(rctx, queue, o)
				rcancel()
				if err != nil {
					if pctx.Err() != nil {
						return retry.Permanent(pctx.Err())
					}
					return err
				}
				c, cgen = nc, b.tasksGen.Load()
			}
			first, err := pl.request(c.CachedInfo().Name, n, cgen)
			if err != nil {
				if pctx.Err() != nil {
					return retry.Permanent(pctx.Err())
				}
				c = nil
				return err
			}
			if !sync {
				return nil
			}
			select {
			case err = <-first:
			case <-pctx.Done():
				return retry.Permanent(pctx.Err())
			}
			if err != nil {
				c = nil
			}
			return err
		}
		// A task stream made again (restore.go, or found so as a
		// consumer opened: Bus.consumer) has lost the queue's durable
		// consumer: make it again (unless it was opened on the new
		// stream), and give up the requests sent to the old one, which
		// no message will answer.
		defer b.followTasks(func() {
			select {
			case cr.wake <- struct{}{}:
			default:
			}
		})()
		failing := false
		for pctx.Err() == nil {
			if g := b.tasksGen.Load(); g != seen {
				seen = g
				if cgen != g {
					c = nil
				}
				pl.abandonOlder(g)
			}
			size, changed := win.Size()
			held, err := cr.state()
			if err != nil {
				// A request failed without a message: open the consumer
				// again and ask synchronously until a request succeeds.
				c, failing = nil, true
				failures++
			}
			if free := size - held; free > 0 && (failing || 4*free >= size || held == 0) {
				if err := retry.Do(pctx, p, func() error {
					if failing {
						free = max(1, size-cr.heldNow())
					}
					return pull(free, failing)
				}); err != nil {
					if pctx.Err() == nil {
						b.log.Error("natsbus: pull ended", "queue", queue, "err", err)
					}
					return
				}
				if failing && failures >= 3 {
					b.log.Info("natsbus: pull recovered", "queue", queue, "failures", failures)
				}
				failing, failures = false, 0
				continue
			}
			select {
			case <-cr.wake:
			case <-changed:
			case <-pctx.Done():
			}
		}
	}()
	return out
}

// puller sends a windowed consumer's pull requests and hands over what
// they bring. Each request has an inbox subscription of its own: the
// server delivers a message with its stream subject, so only the
// subscription tells which request it answers.
type puller struct {
	b     *Bus
	queue string
	out   chan<- bus.Delivery
	ctx   context.Context // ends the pulling
	cr    *credit

	mu   sync.Mutex
	reqs map[*pullReq]struct{}

	// sending is held (read) while a message is handed over; stopped,
	// set under it, means out is about to close.
	sending sync.RWMutex
	stopped bool
}

// pullReq is a pull request in flight: n messages asked for, got come.
// Its fields are guarded by puller.mu.
type pullReq struct {
	n, got int
	ended  bool
	// lapsed: ended here by its timer, with no word from the server yet
	// (its subscription stays until that word, or lingerAfterLapse).
	lapsed bool
	first  chan error // hears nil at the first message, or the error of an end without one
	gen    uint64     // the task stream's generation it was sent to (Bus.tasksGen)
	timer  *time.Timer
	sub    *nats.Subscription
}

// request sends a pull request for n messages to the consumer, opened on
// the task stream's generation gen, and returns the channel that hears its
// first message or its end.
func (p *puller) request(consumer string, n int, gen uint64) (<-chan error, error) {
	r := &pullReq{n: n, first: make(chan error, 1), gen: gen}
	inbox := p.b.nc.NewInbox()
	p.mu.Lock()
	sub, err := p.b.nc.Subscribe(inbox, func(m *nats.Msg) { p.onMsg(r, m) })
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	// The window bounds what comes; the defaults could drop some.
	_ = sub.SetPendingLimits(-1, -1)
	r.sub = sub
	p.reqs[r] = struct{}{}
	// The server ends the request at its expiry with a 408 status; if
	// that is lost (a reconnection), it ends here after windowExpiry, as
	// Fetch ended its requests (lapse).
	r.timer = time.AfterFunc(p.b.opts.pullWait, func() { p.lapse(r) })
	p.mu.Unlock()
	p.cr.add(n, nil)
	// The server's expiry is a tenth short of windowExpiry, as Fetch's:
	// a request left waiting by a consumer that died must be gone before
	// a lease of windowExpiry runs out, or the server tries the
	// redelivery on it first (nats-server 2.9 then counts that delivery
	// once less: TestConformanceServer/Oldest/Core/QueueConsumerDies).
	body := fmt.Appendf(nil, `{"batch":%d,"expires":%d}`, n, p.b.opts.pullExpires.Nanoseconds())
	if err := p.b.nc.PublishRequest(jetstream.DefaultAPIPrefix+"CONSUMER.MSG.NEXT."+p.b.tasksStream+"."+consumer, inbox, body); err != nil {
		p.end(r, err, false)
		<-r.first
		return nil, err
	}
	return r.first, nil
}

// end ends request r, which will bring nothing more: its room not filled
// goes back to the window, and its subscription goes (drained when the
// pulling stops, so that what is on its way is handed back at once). err
// (nil for an expired request or an empty queue) is the pulling loop's,
// when the request brought nothing.
func (p *puller) end(r *pullReq, err error, drain bool) {
	p.mu.Lock()
	if r.ended {
		p.mu.Unlock()
		return
	}
	r.ended = true
	delete(p.reqs, r)
	r.timer.Stop()
	got, n, lapsed := r.got, r.n, r.lapsed
	p.mu.Unlock()
	switch {
	case drain:
		_ = r.sub.Drain()
	case !lapsed: // a lapsed one lingers (lapse)
		_ = r.sub.Unsubscribe()
	}
	if got > 0 || p.ctx.Err() != nil {
		err = nil
	}
	p.cr.add(got-n, err)
	if got == 0 {
		r.first <- err
	}
}

// lingerAfterLapse is how long a lapsed request's subscription stays
// for what the server may still send to it.
const lingerAfterLapse = 10 * time.Second

// lapse ends request r when the server's word of its end did not come in
// time: a lost 408, or a request that reached a busy cluster's consumer
// leader late, whose expiry the server counts from then. Its room goes
// back to the window, but its subscription stays until the server's word
// comes or lingerAfterLapse passes: what the server still sends to it is
// taken as a delivery (onMsg). Unsubscribed at once, a lapsed request
// left those messages to come back only after their lease (a flood on a
// loaded three-node cluster, QueueWindowChurn: the last four of a
// request's 194 messages came 190 in, lapsed, then nothing for 30 s).
func (p *puller) lapse(r *pullReq) {
	p.mu.Lock()
	if r.ended {
		p.mu.Unlock()
		return
	}
	r.lapsed = true
	p.mu.Unlock()
	time.AfterFunc(lingerAfterLapse, func() { _ = r.sub.Unsubscribe() })
	p.end(r, nil, false)
}

// onMsg takes what the server sends to request r: a message, or a status
// that ends the request.
func (p *puller) onMsg(r *pullReq, m *nats.Msg) {
	if len(m.Data) == 0 && len(m.Header) > 0 {
		if status := m.Header.Get("Status"); status != "" {
			p.status(r, status, m.Header.Get("Description"))
			return
		}
	}
	p.mu.Lock()
	if r.ended {
		lapsed := r.lapsed
		p.mu.Unlock()
		if lapsed && p.ctx.Err() == nil {
			// Late, not lost: a delivery beyond the window's room for
			// now, which its settle frees as any other.
			p.cr.add(1, nil)
			p.deliver(m, r.gen)
			return
		}
		// Its request ended here already (stopping): hand it back at
		// once rather than at its lease.
		_ = p.b.nc.Publish(m.Reply, []byte("-NAK"))
		return
	}
	r.got++
	if r.got == 1 {
		r.first <- nil
	}
	full := r.got == r.n
	p.mu.Unlock()
	if full {
		// Everything asked for came: the server sends nothing more.
		p.end(r, nil, false)
	}
	p.deliver(m, r.gen)
}

// deliver hands m to the reader as a delivery whose final settle frees
// its room in the window, or, when the pulling stops first, hands it
// back at once rather than at its lease.
func (p *puller) deliver(m *nats.Msg, gen uint64) {
	d := p.b.newDeliveryMsg(m, p.queue, gen)
	d.release = func() { p.cr.add(-1, nil) }
	if !p.handOver(d) {
		_ = d.Nak(context.Background(), 0)
	}
}

// handOver sends d to the reader unless the pulling stops first.
func (p *puller) handOver(d *delivery) bool {
	p.sending.RLock()
	defer p.sending.RUnlock()
	if p.stopped || p.ctx.Err() != nil {
		return false
	}
	select {
	case p.out <- d:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// status ends a request on the server's word: 404 (no messages, for a
// request that does not wait), 408 (it expired) and 409 (its consumer was
// deleted, changed leader, the server is shutting down…). 100 is an idle
// heartbeat, which these requests do not ask for.
func (p *puller) status(r *pullReq, status, descr string) {
	p.mu.Lock()
	lapsed := r.lapsed
	p.mu.Unlock()
	if lapsed && status != "100" {
		_ = r.sub.Unsubscribe() // the server's word came: nothing follows
		return
	}
	var err error
	switch status {
	case "100":
		return
	case "404", "408":
	case "503":
		err = nats.ErrNoResponders
	default:
		err = fmt.Errorf("natsbus: pull request ended: %s %s", status, descr)
	}
	p.end(r, err, false)
}

// abandon ends the requests in flight, which will bring nothing: their
// consumer is gone.
func (p *puller) abandon() { p.endAll(false) }

// abandonOlder ends the requests sent to a task stream's generation
// before gen: the stream they went to is gone.
func (p *puller) abandonOlder(gen uint64) {
	p.mu.Lock()
	var rs []*pullReq
	for r := range p.reqs {
		if r.gen < gen {
			rs = append(rs, r)
		}
	}
	p.mu.Unlock()
	for _, r := range rs {
		p.end(r, nil, false)
	}
}

// stop ends the pulling: requests in flight are abandoned, and what they
// still bring goes back at once (onMsg).
func (p *puller) stop() {
	// No hand-over after this (p.ctx has ended: one in progress returns
	// at once).
	p.sending.Lock()
	p.stopped = true
	p.sending.Unlock()
	p.endAll(true)
}

// endAll ends every request in flight (end's drain).
func (p *puller) endAll(drain bool) {
	p.mu.Lock()
	rs := make([]*pullReq, 0, len(p.reqs))
	for r := range p.reqs {
		rs = append(rs, r)
	}
	p.mu.Unlock()
	for _, r := range rs {
		p.end(r, nil, drain)
	}
}
