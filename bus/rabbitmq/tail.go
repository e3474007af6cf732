package rabbitmq

import (
	"context"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
)

// tail is the bus' one live reader of the event stream, shared by its
// subscriptions. RabbitMQ 3.10 cannot filter a stream on the broker, so a
// consumer per subscription made the broker send, and the bus read, every
// event once per subscription: with a subscription per job, O(jobs²) for
// many concurrent jobs. The tail reads each event once and hands it to
// the subscriptions whose pattern it matches.
//
// A subscription joins the tail while it reads on a consumer of its own
// (its catch-up from its start position), and moves over when its own
// consumer reaches the first offset the tail read after the join (see
// subscription.run): from there on the tail has buffered every message
// it matches, so the hand-over has no gap, and positions (offsets) drop
// what both read.
//
// The tail never waits for a subscriber: each has a bounded buffer
// (Options.SubscriberBuffer messages), and one that would overflow it is
// detached with the offset that did not fit. It delivers what its buffer
// holds and reads on from there on a consumer of its own again, to rejoin
// once it has read past that offset. A slow reader thus slows only
// itself, and nothing is dropped. When the tail's consumer ends (a lost
// connection), every subscriber is detached the same way and resumes on
// its own from its last position.
type tail struct {
	b *Bus

	mu      sync.Mutex
	subs    map[*tailSub]struct{}
	running bool
	wake    chan struct{} // a subscriber left: the tail checks whether anyone is left
}

// tailSub is one subscription's place in the tail. Fields after mu are
// guarded by tail.mu.
type tailSub struct {
	tokens []string      // the pattern, split at dots once
	ready  chan struct{} // capacity 1: something was buffered, or detached

	joinAt   int64 // first offset the tail read after the join; -1 none yet
	buf      []bus.Message
	bytes    int
	detached bool
	overflow int64 // when detached: the offset that did not fit; -1 the tail ended
}

func (ts *tailSub) signal() {
	select {
	case ts.ready <- struct{}{}:
	default:
	}
}

// join registers a subscription for pattern, starting the tail's
// consumer if it is not running.
func (t *tail) join(pattern string) *tailSub {
	ts := &tailSub{tokens: strings.Split(pattern, "."), ready: make(chan struct{}, 1), joinAt: -1, overflow: -1}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subs == nil {
		t.subs = map[*tailSub]struct{}{}
		t.wake = make(chan struct{}, 1)
	}
	t.subs[ts] = struct{}{}
	if !t.running {
		t.running = true
		t.b.wg.Add(1)
		go t.run()
	}
	return ts
}

// leave unregisters ts (a subscription that ended or gave its place up).
func (t *tail) leave(ts *tailSub) {
	t.mu.Lock()
	delete(t.subs, ts)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// take returns what ts has buffered (emptying it), whether it is
// detached and, if so, the offset that overflowed (-1: the tail ended).
func (t *tail) take(ts *tailSub) ([]bus.Message, bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ms := ts.buf
	ts.buf, ts.bytes = nil, 0
	return ms, ts.detached, ts.overflow
}

// joinedAt returns the first offset the tail read after ts joined (-1
// when it has read none yet), and whether ts was detached meanwhile, with
// the offset that overflowed (-1: the tail ended).
func (t *tail) joinedAt(ts *tailSub) (int64, bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return ts.joinAt, ts.detached, ts.overflow
}

// run reads the stream from its end until nobody is joined, the bus
// closes or the consumer ends; then it detaches everyone left.
func (t *tail) run() {
	defer t.b.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-t.b.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	ch, deliveries, err := t.b.attach(ctx, "next", "read the event stream's tail")
	if err != nil {
		if !t.b.isClosed() {
			t.b.log.Warn("rabbitmq event tail: attach failed; subscriptions read on their own", "err", err)
		}
		t.stop()
		return
	}
	defer closeConsumer(ch, deliveries)
	ack := newAcker(ch, t.b.opts.StreamPrefetch)
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				t.stop()
				return
			}
			t.b.streamReads.Add(1)
			ack.ack(d.DeliveryTag)
			t.dispatch(&d)
		case <-t.wake:
			if t.stopIfEmpty() {
				return
			}
		case <-t.b.done:
			t.stop()
			return
		}
	}
}

// dispatch hands one delivery to every joined subscription it matches.
func (t *tail) dispatch(d *amqp.Delivery) {
	off, ok := headerInt(d.Headers, hdrOffset)
	if !ok || off < 0 {
		t.b.log.Warn("rabbitmq stream delivery without an offset; skipped by the event tail")
		return
	}
	limit := t.b.opts.SubscriberBuffer
	subject := strings.Split(d.RoutingKey, ".")
	t.mu.Lock()
	defer t.mu.Unlock()
	for ts := range t.subs {
		if ts.joinAt < 0 {
			ts.joinAt = off
		}
		if !matchTokens(ts.tokens, subject) {
			continue
		}
		if len(ts.buf) >= limit || (len(ts.buf) > 0 && ts.bytes+len(d.Body) > subscriberBufferBytes) {
			ts.detached, ts.overflow = true, off
			delete(t.subs, ts)
			ts.signal()
			continue
		}
		m := message(d, d.RoutingKey)
		m.Seq = uint64(off) + 1
		ts.buf = append(ts.buf, m)
		ts.bytes += len(d.Body)
		ts.signal()
	}
}

// subscriberBufferBytes bounds the bytes the tail holds for one
// subscription besides the count (Options.SubscriberBuffer): events may
// carry results of up to MaxMessageSize.
const subscriberBufferBytes = 8 << 20

// stopIfEmpty ends the tail when nobody is joined.
func (t *tail) stopIfEmpty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.subs) > 0 {
		return false
	}
	t.running = false
	return true
}

// stop ends the tail and detaches every subscription still joined: each
// goes on from its own last position on its own consumer.
func (t *tail) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ts := range t.subs {
		ts.detached, ts.overflow = true, -1
		ts.signal()
	}
	clear(t.subs)
	t.running = false
}

// acker acknowledges stream deliveries several at a time (multiple=true):
// on a stream an ack only grants the consumer credit, and one per
// delivery made acks the larger part of a subscriber's work (a write
// system call each). It acks every quarter of the prefetch, so the
// credit never runs out; deliveries left unacked when traffic stops cost
// nothing on a stream.
type acker struct {
	ch    *amqp.Channel
	every int
	n     int
}

func newAcker(ch *amqp.Channel, prefetch int) *acker {
	return &acker{ch: ch, every: max(prefetch/4, 1)}
}

func (a *acker) ack(tag uint64) {
	a.n++
	if a.n >= a.every {
		_ = a.ch.Ack(tag, true)
		a.n = 0
	}
}
