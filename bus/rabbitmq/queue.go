package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
)

const (
	defaultLease       = 30 * time.Second
	defaultMaxAttempts = 5
	declareRefresh     = 30 * time.Second // see ensureDelayQueue
)

// DeadLetterQueue names the queue that Term and the broker's delivery
// limit move a work queue's messages to.
func DeadLetterQueue(queue string) string { return queue + ".dead" }

// queueArgs are the arguments of a work queue (dlq false) or its
// dead-letter queue (dlq true).
func (b *Bus) queueArgs(queue string, dlq bool) amqp.Table {
	args := amqp.Table{}
	if b.quorum {
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
	} else {
		args[amqp.QueueTypeArg] = amqp.QueueTypeClassic
	}
	if !dlq {
		args["x-dead-letter-exchange"] = b.requeueName()
		args["x-dead-letter-routing-key"] = DeadLetterQueue(queue)
		if b.quorum {
			args["x-delivery-limit"] = int64(b.opts.DeliveryLimit)
		}
	}
	return args
}

// declare runs fn on a short-lived channel: a failed declare closes its
// channel, so it must not be a shared one.
func (b *Bus) declare(ctx context.Context, fn func(ch *amqp.Channel) error) error {
	for attempt := 0; ; attempt++ {
		ch, err := b.channel(ctx)
		if err != nil {
			return err
		}
		err = fn(ch)
		_ = ch.Close()
		if err == nil {
			return nil
		}
		var aerr *amqp.Error
		dropped := errors.Is(err, amqp.ErrClosed) || (errors.As(err, &aerr) && aerr.Code == amqp.ConnectionForced)
		if !dropped {
			return err // a real refusal (bad arguments, access), not a dropped link
		}
		if !b.backoff(ctx, attempt) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return bus.ErrClosed
		}
	}
}

// ensureQueue declares queue and its dead-letter queue once per process,
// and binds both to the requeue exchange under their own names.
//
// A work queue declared before the requeue exchange existed dead-letters
// through the default exchange: declaring it again with other arguments
// is refused (406 PRECONDITION_FAILED), and it is taken as it is. Its dead
// letters still reach "<queue>.dead" by name.
func (b *Bus) ensureQueue(ctx context.Context, queue string) error {
	b.declMu.Lock()
	_, ok := b.declared[queue]
	b.declMu.Unlock()
	if ok {
		return nil
	}
	dlq := DeadLetterQueue(queue)
	err := b.declare(ctx, func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(dlq, true, false, false, false, b.queueArgs(queue, true)); err != nil {
			return fmt.Errorf("rabbitmq: declare dead-letter queue %s: %w", dlq, err)
		}
		return nil
	})
	if err == nil {
		err = b.declare(ctx, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(queue, true, false, false, false, b.queueArgs(queue, false))
			return err
		})
		if olderArgs(err) {
			err = b.declare(ctx, func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
				return err
			})
		}
		if err != nil {
			err = fmt.Errorf("rabbitmq: declare queue %s: %w", queue, err)
		}
	}
	if err == nil {
		err = b.bindRequeue(ctx, queue, dlq)
	}
	if err != nil {
		return err
	}
	b.declMu.Lock()
	b.declared[queue] = time.Now()
	b.declMu.Unlock()
	return nil
}

// Enqueue implements bus.Queue. Messages are persistent and confirmed.
func (b *Bus) Enqueue(ctx context.Context, queue string, msgs ...bus.Message) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if err := validSubject("queue", queue); err != nil {
		return err
	}
	queue = b.physical(queue)
	items := make([]*pending, len(msgs))
	for i, m := range msgs {
		if err := b.checkSize("message for queue "+queue, len(m.Data)); err != nil {
			return err
		}
		items[i] = &pending{key: queue, msg: publishing(m, true)}
	}
	if err := b.ensureQueue(ctx, queue); err != nil {
		return err
	}
	if err := b.publishConfirmed(ctx, items); err != nil {
		return fmt.Errorf("rabbitmq: enqueue on %s: %w", queue, err)
	}
	return nil
}

// consumer is one Consume call: it survives reconnects. It has a
// connection of its own, so that one consumer's trouble costs only its
// own deliveries: RabbitMQ answers a second declare of a new quorum
// queue at once, while the first declarer is still starting the queue's
// Raft members, and a consume in that window crashes the broker's
// channel and closes the whole connection with 541 INTERNAL_ERROR. On a
// shared connection the deliveries other consumers held went back to
// their queues while their runtime ran them out: two runtimes starting
// together on a new pool ran tasks twice (TestNewQueueConsumedTogether).
type consumer struct {
	b     *Bus
	queue string
	opts  bus.QueueOptions
	out   chan bus.Delivery
	ctx   context.Context
	win   *bus.Window
}

// consumerTags numbers the consumers of this process.
var consumerTags atomic.Int64

// Consume implements bus.Queue. Each call has its own AMQP channel with
// basic.qos(Prefetch), or the window's size. See the package
// documentation for how Lease maps onto AMQP.
//
// A window that changes is applied without cancelling a consumer that
// may have messages on their way to it: basic.qos applies only to
// consumers started after it, and a quorum queue returns what is on its
// way to a cancelled consumer, counted as delivered once more (an
// attempt lost for nothing). So the channel carries one or more AMQP
// consumers (parts) whose prefetches add up to the window: it grows by
// starting one more, and shrinks by cancelling parts once nothing can be
// on its way to them (see retire).
func (b *Bus) Consume(ctx context.Context, queue string, opts bus.QueueOptions) (<-chan bus.Delivery, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	if err := validSubject("queue", queue); err != nil {
		return nil, err
	}
	queue = b.physical(queue)
	if opts.Prefetch < 0 || opts.Prefetch > 65535 || opts.Lease < 0 || opts.MaxAttempts < 0 {
		return nil, fmt.Errorf("rabbitmq: consume %s: bad options %+v: want Prefetch 0 to 65535, Lease and MaxAttempts >= 0", queue, opts)
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = 1
	}
	if opts.Lease == 0 {
		opts.Lease = defaultLease
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = defaultMaxAttempts
	}
	if err := b.ensureQueue(ctx, queue); err != nil {
		return nil, err
	}
	win := opts.Window
	if win == nil {
		win = bus.NewWindow(opts.Prefetch)
	}
	c := &consumer{b: b, queue: queue, opts: opts, out: make(chan bus.Delivery), ctx: ctx, win: win}
	cs, err := c.subscribe()
	for attempt := 0; err != nil && dropped(err); attempt++ {
		// A new quorum queue's consume can crash its connection (see
		// consumer), and a broker may be restarting: try again, as a
		// consumer does when its connection drops later.
		b.log.Warn("rabbitmq consume failed; trying again", "queue", queue, "err", err)
		if !b.backoff(ctx, attempt) {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("rabbitmq: consume %s: %w (after: %v)", queue, ctx.Err(), err)
			}
			return nil, bus.ErrClosed
		}
		cs, err = c.subscribe()
	}
	if err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go c.run(cs)
	return c.out, nil
}

// parts is a consumer's connection and channel, and the AMQP consumers
// on it.
type parts struct {
	c    *consumer
	conn *amqp.Connection // the consumer's own
	ch   *amqp.Channel
	// in carries every part's deliveries; a part's closing arrives as a
	// zero delivery with its part.
	in   chan partDelivery
	live atomic.Int32 // parts whose deliveries are not closed yet

	mu       sync.Mutex // guards what follows; taken before a part's mu
	closed   bool       // no part starts any more (closing, or a resize failed)
	size     int        // the window applied
	active   []*part    // their prefetches add up to size
	retiring []*part
	// risked is when a part with room left was last cancelled (see
	// sweep).
	risked time.Time
}

// part is one AMQP consumer of a consumer's channel.
type part struct {
	tag      string
	prefetch int
	// mu orders the acks of its deliveries after its cancel: a part is
	// cancelled only while every message it may take is in the reader's
	// hands (unacked == prefetch), and no ack may open room for another
	// before the broker has the cancel.
	mu       sync.Mutex
	unacked  int       // delivered and not yet released by an ack or nack
	last     time.Time // its last delivery, or when it started
	since    time.Time // when it was set to retire
	retiring bool
	// held are the releases (acks, nacks) of its deliveries made while it
	// retires: they go to the broker once it is cancelled, so that it
	// fills up with what is on its way to it (see sweep).
	held []func() error
	gone bool // cancelled
}

type partDelivery struct {
	p  *part
	d  amqp.Delivery
	ok bool
}

// subscribe connects the consumer and starts its AMQP consumer.
func (c *consumer) subscribe() (*parts, error) {
	if c.b.isClosed() {
		return nil, bus.ErrClosed
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Duration(len(c.b.nodes))*c.b.opts.DialTimeout)
	conn, err := c.b.dialOwn(ctx, "consume "+c.queue)
	cancel()
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	cs := &parts{c: c, conn: conn, ch: ch, in: make(chan partDelivery)}
	size, _ := c.win.Size()
	cs.size = min(size, 65535)
	if err := cs.add(cs.size); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return cs, nil
}

// dropped reports whether err is a consumer's lost connection or channel
// (the broker's 541 or 320, a closed connection, a broker that cannot be
// reached right now) rather than a refusal of the consume itself.
func dropped(err error) bool {
	var ae *amqp.Error
	if errors.Is(err, amqp.ErrClosed) || errors.Is(err, bus.ErrUnreachable) {
		return true
	}
	return errors.As(err, &ae) && (ae.Code == amqp.InternalError || ae.Code == amqp.ConnectionForced || ae.Code == amqp.ChannelError)
}

// add starts one more AMQP consumer with prefetch n.
func (cs *parts) add(n int) error {
	if err := cs.ch.Qos(n, 0, false); err != nil {
		return fmt.Errorf("rabbitmq: set prefetch on %s: %w", cs.c.queue, err)
	}
	// A tag of its own each time: a consumer is never started again
	// under the tag of one cancelled on the same channel.
	p := &part{tag: "skein-" + strconv.FormatInt(consumerTags.Add(1), 10), prefetch: n, last: time.Now()}
	deliveries, err := cs.ch.ConsumeWithContext(context.Background(), cs.c.queue, p.tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("rabbitmq: consume %s: %w", cs.c.queue, err)
	}
	cs.active = append(cs.active, p)
	cs.live.Add(1)
	go func() {
		for d := range deliveries {
			cs.in <- partDelivery{p: p, d: d, ok: true}
		}
		cs.in <- partDelivery{p: p}
	}()
	return nil
}

// maxParts bounds the AMQP consumers of one channel: past it, a growing
// window replaces them all by one. The runtime's pacer grows a window by
// a quarter at least, so 32 parts take a window of 2 past 1,000.
const maxParts = 32

// apply brings the parts to the window's present size and cancels the
// retiring parts that may go; false when the channel failed. The reader
// goroutine calls it when the window changes, and so does every ack and
// nack (release) before it is sent: an ack after the window shrank must
// not make room in a part that is to go.
func (cs *parts) apply() bool {
	n, _ := cs.c.win.Size()
	n = min(n, 65535)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	if n != cs.size {
		if err := cs.resize(n); err != nil {
			// Once: the channel is gone, and the reader subscribes again
			// when its deliveries end.
			cs.closed = true
			cs.c.b.log.Warn("rabbitmq: resizing the consumer's window failed; subscribing again", "queue", cs.c.queue, "err", err)
			return false
		}
		cs.size = n
	}
	return len(cs.retiring) == 0 || cs.sweep()
}

// resize applies a window of size n: a larger one starts a part for the
// difference; a smaller one retires parts (largest first) until the rest
// fit, and starts a part for what they leave short. Called with cs.mu
// held.
func (cs *parts) resize(n int) error {
	sum := 0
	for _, p := range cs.active {
		sum += p.prefetch
	}
	if n > sum && len(cs.active) >= maxParts {
		cs.retire(cs.active...)
		cs.active, sum = nil, 0
	}
	if n < sum {
		slices.SortFunc(cs.active, func(a, b *part) int { return b.prefetch - a.prefetch })
		for sum > n && len(cs.active) > 0 {
			sum -= cs.active[0].prefetch
			cs.retire(cs.active[0])
			cs.active = cs.active[1:]
		}
	}
	if n > sum {
		return cs.add(n - sum)
	}
	return nil
}

// retire sets parts to be cancelled (by sweep).
func (cs *parts) retire(ps ...*part) {
	now := time.Now()
	for _, p := range ps {
		p.mu.Lock()
		p.since, p.retiring = now, true
		p.mu.Unlock()
		cs.retiring = append(cs.retiring, p)
	}
}

// A retiring part is cancelled once full: nothing can be on its way to
// it then. A quorum queue hands back what was on its way to a consumer it
// cancels, counted as delivered once more, and a message so returned
// goes to the head of the queue and on its way to the next consumer with
// room: cancelling several parts with room in a row passed the same
// messages from one to the next, and a flood on a busy machine used up
// tasks' deliveries within seconds. So the releases of a retiring part's
// deliveries are held until it is cancelled (part.held): it stops making
// room, and in a flood it fills within a few deliveries. A part that does
// not fill (the queue ran dry) is cancelled once quiet for retireQuiet,
// or at the latest after retireMax (a trickle); such cancels are spaced
// by riskGap, so that what one hands back has reached the reader before
// the next, and none of them is a cancel of a part whose acks flow.
const (
	retireQuiet = 250 * time.Millisecond
	retireMax   = 5 * time.Second
	riskGap     = 100 * time.Millisecond
)

// sweep cancels the retiring parts that may go; false when the channel
// failed. Called with cs.mu held.
func (cs *parts) sweep() bool {
	now := time.Now()
	kept := cs.retiring[:0]
	var failed error
	for _, p := range cs.retiring {
		if failed != nil {
			kept = append(kept, p)
			continue
		}
		p.mu.Lock()
		full := p.unacked >= p.prefetch
		if !full && (now.Sub(p.last) < retireQuiet && now.Sub(p.since) < retireMax || now.Sub(cs.risked) < riskGap) {
			p.mu.Unlock()
			kept = append(kept, p)
			continue
		}
		if !full {
			cs.risked = now
		}
		// Releases of its deliveries wait (p.mu, part.held) until the
		// broker has the cancel: one before it would make room for one
		// more message.
		failed = cs.ch.Cancel(p.tag, false)
		p.gone = true
		p.flush(cs.c)
		p.mu.Unlock()
	}
	clear(cs.retiring[len(kept):])
	cs.retiring = kept
	return failed == nil
}

// flush sends the releases held while p retired. Called with p.mu held.
func (p *part) flush(c *consumer) {
	failed := 0
	var last error
	for _, send := range p.held {
		if err := send(); err != nil {
			failed, last = failed+1, err
		}
	}
	if failed > 0 {
		// The channel is gone: those messages come back with it.
		c.b.log.Warn("rabbitmq: settling deliveries of a retired consumer failed; they will be delivered again", "queue", c.queue, "deliveries", failed, "err", last)
	}
	clear(p.held)
	p.held = nil
}

func (c *consumer) run(cs *parts) {
	defer c.b.wg.Done()
	defer close(c.out)
	for attempt := 0; ; {
		if cs != nil {
			// Unsettled deliveries go back to the queue with the channel.
			cs.forward()
			cs.close()
			cs = nil
		}
		if c.ctx.Err() != nil || c.b.isClosed() {
			return
		}
		// The queue may be gone (a broker that came back without its
		// data): declare it again rather than wait for a producer to.
		err := c.b.ensureQueue(c.ctx, c.queue)
		if err == nil {
			cs, err = c.subscribe()
		}
		if err != nil {
			if c.ctx.Err() != nil || c.b.isClosed() {
				return
			}
			var aerr *amqp.Error
			if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
				c.b.forget(c.queue)
			}
			c.b.log.Warn("rabbitmq resubscribe failed", "queue", c.queue, "err", err)
			if !c.b.backoff(c.ctx, attempt) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		c.b.log.Info("rabbitmq consumer resubscribed", "queue", c.queue)
	}
}

// close closes the consumer's connection, draining what its parts still
// deliver meanwhile (the library's close waits for them).
func (cs *parts) close() {
	cs.mu.Lock()
	cs.closed = true // an ack's apply starts no part to be left undrained
	// What retiring parts held goes out before the channel closes: an
	// ack lost with it would run its task again.
	for _, p := range cs.retiring {
		p.mu.Lock()
		p.gone = true
		p.flush(cs.c)
		p.mu.Unlock()
	}
	cs.mu.Unlock()
	go func() {
		for ; cs.live.Load() > 0; cs.live.Add(-1) {
			for pd := range cs.in {
				if !pd.ok {
					break
				}
			}
		}
	}()
	_ = cs.conn.Close()
}

// forward hands deliveries to the reader until the channel ends, ctx
// ends or the bus closes, applying window changes meanwhile.
func (cs *parts) forward() {
	c := cs.c
	_, changed := c.win.Size()
	tick := time.NewTicker(retireQuiet / 2)
	defer tick.Stop()
	for {
		select {
		case pd := <-cs.in:
			if !pd.ok {
				cs.mu.Lock()
				gone := pd.p.gone
				cs.mu.Unlock()
				if cs.live.Add(-1) == 0 || !gone {
					return // the channel closed
				}
				continue
			}
			pd.p.mu.Lock()
			pd.p.unacked++
			pd.p.last = time.Now()
			pd.p.mu.Unlock()
			if !c.deliver(cs, pd.p, pd.d) {
				return
			}
		case <-changed:
			_, changed = c.win.Size()
			if !cs.apply() {
				return
			}
		case <-tick.C:
			if !cs.apply() {
				return
			}
		case <-c.ctx.Done():
			return
		case <-c.b.done:
			return
		}
	}
}

// deliver hands one delivery to the reader; false when ctx ended or the
// bus closed first.
func (c *consumer) deliver(cs *parts, p *part, d amqp.Delivery) bool {
	dl := c.newDelivery(cs.ch, p, d)
	dl.parts = cs
	if dl.attempt > c.opts.MaxAttempts+1 {
		// The consumer was handed it once more with Attempt() >
		// MaxAttempts and still did not settle it.
		reason := fmt.Sprintf("delivered %d times, more than MaxAttempts (%d) + 1", dl.attempt, c.opts.MaxAttempts)
		if err := dl.Term(c.ctx, reason); err != nil {
			c.b.log.Warn("rabbitmq dead-lettering failed", "queue", c.queue, "err", err)
		}
		return true
	}
	select {
	case c.out <- dl:
		return true
	case <-c.ctx.Done():
	case <-c.b.done:
	}
	// Not handed over: it goes back with the channel.
	dl.settle()
	return false
}

func (c *consumer) newDelivery(ch *amqp.Channel, p *part, d amqp.Delivery) *delivery {
	base, _ := headerInt(d.Headers, hdrAttempts)
	attempt := int(base) + 1
	if c.b.quorum {
		if n, ok := headerInt(d.Headers, hdrDelivCnt); ok {
			attempt += int(n)
		} else if d.Redelivered {
			attempt++
		}
	} else if d.Redelivered {
		attempt++
	}
	dl := &delivery{c: c, ch: ch, p: p, d: d, attempt: attempt, msg: message(&d, c.queue)}
	dl.mu.Lock()
	dl.lease = time.AfterFunc(c.opts.Lease, dl.expire)
	dl.mu.Unlock()
	return dl
}

// delivery implements bus.Delivery.
type delivery struct {
	c       *consumer
	ch      *amqp.Channel
	p       *part  // the AMQP consumer it came from
	parts   *parts // and the channel's consumers
	d       amqp.Delivery
	msg     bus.Message
	attempt int

	mu       sync.Mutex
	settled  bool
	lease    *time.Timer
	released bool // its ack or nack was sent (under p.mu)
}

// ack and nack send the delivery's settlement, counted off its part's
// unacked deliveries (see part.mu).
func (d *delivery) ack() error {
	return d.release(func() error { return d.ch.Ack(d.d.DeliveryTag, false) })
}

func (d *delivery) nack() error {
	return d.release(func() error { return d.ch.Nack(d.d.DeliveryTag, false, true) })
}

func (d *delivery) release(send func() error) error {
	if d.parts != nil {
		d.parts.apply()
	}
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	release := func() error {
		if !d.released {
			d.released = true
			d.p.unacked--
		}
		return send()
	}
	if d.p.retiring && !d.p.gone {
		d.p.held = append(d.p.held, release)
		return nil
	}
	return release()
}

func (d *delivery) Message() bus.Message { return d.msg }
func (d *delivery) Attempt() int         { return d.attempt }

// Revoked implements bus.Revocable: the delivery's channel closed (its
// consumer's connection dropped, or the bus closed), so the broker has
// put the message back on its queue.
func (d *delivery) Revoked() bool { return d.ch.IsClosed() }

// settle marks the delivery settled; false if it already was.
func (d *delivery) settle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return false
	}
	d.settled = true
	d.lease.Stop()
	return true
}

// expire returns an unsettled delivery to the queue when its lease runs
// out: AMQP has no lease, so the bus keeps one. A delivery whose channel
// closed (the bus closed, or lost its connection) went back to its queue
// with the channel, and its lease ended there.
func (d *delivery) expire() {
	if !d.settle() {
		return
	}
	if d.c.b.isClosed() || d.ch.IsClosed() {
		return
	}
	d.c.b.log.Warn("rabbitmq lease expired; returning the message to its queue", "queue", d.c.queue, "attempt", d.attempt, "lease", d.c.opts.Lease)
	_ = d.nack()
}

func (d *delivery) errSettled(op string) error {
	return fmt.Errorf("rabbitmq: %s on %s (settled, lease expired or consumer closed): %w", op, d.c.queue, bus.ErrSettled)
}

func (d *delivery) Ack(ctx context.Context) error {
	if !d.settle() {
		return d.errSettled("ack")
	}
	if err := d.ack(); err != nil {
		return fmt.Errorf("rabbitmq: ack on %s (the message will be redelivered): %w", d.c.queue, err)
	}
	return nil
}

func (d *delivery) InProgress(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return d.errSettled("in progress")
	}
	if d.ch.IsClosed() {
		return fmt.Errorf("rabbitmq: in progress on %s: channel closed, the message will be redelivered: %w", d.c.queue, amqp.ErrClosed)
	}
	d.lease.Reset(d.c.opts.Lease)
	return nil
}

// Nak returns the message for redelivery. Without delay on a quorum
// queue it is a basic.nack with requeue (the broker counts the delivery).
// With a delay (or on a classic queue, which counts nothing) the message is
// republished, with its attempt count in a header, to a delay queue whose
// TTL dead-letters it back into the work queue, and the original is acked
// once the broker confirmed the copy.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	if !d.settle() {
		return d.errSettled("nak")
	}
	if delay <= 0 && d.c.b.quorum {
		if err := d.nack(); err != nil {
			return fmt.Errorf("rabbitmq: nak on %s (the message will be redelivered): %w", d.c.queue, err)
		}
		return nil
	}
	key := d.c.queue
	if delay > 0 {
		var err error
		key, err = d.c.b.ensureDelayQueue(ctx, d.c.queue, delay)
		if err != nil {
			_ = d.nack()
			return err
		}
	}
	p := d.copy()
	p.Headers[hdrAttempts] = int64(d.attempt)
	if err := d.c.b.publishConfirmed(ctx, []*pending{{exchange: d.c.b.requeueName(), key: key, msg: p}}); err != nil {
		_ = d.nack()
		return fmt.Errorf("rabbitmq: nak with delay on %s: %w", d.c.queue, err)
	}
	if err := d.ack(); err != nil {
		return fmt.Errorf("rabbitmq: nak on %s: the delayed copy is queued but the original was not acked and will come again: %w", d.c.queue, err)
	}
	return nil
}

// Term moves the message to the queue's dead-letter queue with reason,
// queue and attempt in headers, then acks it.
func (d *delivery) Term(ctx context.Context, reason string) error {
	if !d.settle() {
		return d.errSettled("term")
	}
	p := d.copy()
	p.Headers[hdrReason] = reason
	p.Headers[hdrQueue] = d.c.queue
	p.Headers[hdrAttempt] = int64(d.attempt)
	p.Headers[hdrDeadAt] = time.Now().UTC().Format(time.RFC3339Nano)
	if err := d.c.b.publishConfirmed(ctx, []*pending{{exchange: d.c.b.requeueName(), key: DeadLetterQueue(d.c.queue), msg: p}}); err != nil {
		_ = d.nack()
		return fmt.Errorf("rabbitmq: term on %s: dead-lettering failed, the message goes back to the queue: %w", d.c.queue, err)
	}
	d.c.b.log.Warn("rabbitmq message dead-lettered", "queue", d.c.queue, "dead_letter_queue", DeadLetterQueue(d.c.queue), "attempt", d.attempt, "reason", reason)
	if err := d.ack(); err != nil {
		return fmt.Errorf("rabbitmq: term on %s: the dead letter is stored but the original was not acked and will come again: %w", d.c.queue, err)
	}
	return nil
}

// copy rebuilds the delivery as a persistent publishing.
func (d *delivery) copy() amqp.Publishing {
	h := amqp.Table{}
	for k, v := range d.d.Headers {
		if k == hdrDelivCnt || k == "x-death" || k == "x-first-death-exchange" || k == "x-first-death-queue" || k == "x-first-death-reason" {
			continue
		}
		h[k] = v
	}
	return amqp.Publishing{
		Headers:      h,
		Body:         d.d.Body,
		MessageId:    d.d.MessageId,
		Timestamp:    d.d.Timestamp,
		ContentType:  d.d.ContentType,
		DeliveryMode: amqp.Persistent,
	}
}

// ensureDelayQueue declares the delay queue for queue and delay (rounded
// up to two significant digits of milliseconds, so that a handful of queues
// serve jittered delays). All its messages share one TTL, so they expire
// in order. It deletes itself after delay+60s unused; it is re-declared at
// least every declareRefresh, so a queue holding messages never expires
// before they do.
func (b *Bus) ensureDelayQueue(ctx context.Context, queue string, delay time.Duration) (string, error) {
	ms := roundDelay(delay.Milliseconds())
	// The "ms" suffix keeps these apart from the delay queues of older
	// releases ("<prefix>.delay.<queue>.<ms>", dead-lettering through the
	// default exchange), which drain and expire by themselves.
	name := b.opts.Prefix + ".delay." + queue + "." + strconv.FormatInt(ms, 10) + "ms"
	b.declMu.Lock()
	last, ok := b.declared[name]
	b.declMu.Unlock()
	if ok && time.Since(last) < declareRefresh {
		return name, nil
	}
	args := amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeClassic,
		amqp.QueueMessageTTLArg:     ms,
		"x-expires":                 ms + int64(2*declareRefresh/time.Millisecond),
		"x-dead-letter-exchange":    b.requeueName(),
		"x-dead-letter-routing-key": queue,
	}
	err := b.declare(ctx, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rabbitmq: declare delay queue %s: %w", name, err)
	}
	if err := b.bindRequeue(ctx, name); err != nil {
		return "", err
	}
	b.declMu.Lock()
	b.declared[name] = time.Now()
	b.declMu.Unlock()
	return name, nil
}

// forget drops queue from the queues declared, so that the next
// ensureQueue declares it again.
func (b *Bus) forget(queue string) {
	b.declMu.Lock()
	delete(b.declared, queue)
	b.declMu.Unlock()
}

// olderArgs reports whether a declare was refused because the queue
// exists with the dead-letter exchange of an older release (the default
// exchange).
func olderArgs(err error) bool {
	var aerr *amqp.Error
	return errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed && strings.Contains(aerr.Reason, "x-dead-letter-exchange")
}

// bindRequeue binds queues to the requeue exchange, each under its own
// name: what a consumer hands back reaches them, and no other queue.
func (b *Bus) bindRequeue(ctx context.Context, queues ...string) error {
	return b.declare(ctx, func(ch *amqp.Channel) error {
		for _, q := range queues {
			if err := ch.QueueBind(q, q, b.requeueName(), false, nil); err != nil {
				var aerr *amqp.Error
				if errors.As(err, &aerr) && aerr.Code == amqp.NotFound && strings.Contains(aerr.Reason, "exchange") {
					return fmt.Errorf("rabbitmq: bind %s to the exchange %s: %w (a coordinator of this release declares it: upgrade and start the coordinators first)", q, b.requeueName(), err)
				}
				return fmt.Errorf("rabbitmq: bind %s to the exchange %s: %w", q, b.requeueName(), err)
			}
		}
		return nil
	})
}

func roundDelay(ms int64) int64 {
	if ms < 1 {
		return 1
	}
	p := int64(1)
	for ms/p >= 100 {
		p *= 10
	}
	return (ms + p - 1) / p * p
}

// DeadLetter is a message found in a dead-letter queue.
type DeadLetter struct {
	Message bus.Message
	// Reason is what Term was given, or the broker's reason
	// ("delivery_limit", "rejected", "expired") for a message the broker
	// dead-lettered itself.
	Reason  string
	Queue   string    // the work queue it came from
	Attempt int       // the attempt on which it was terminated (0 if unknown)
	At      time.Time // when it was dead-lettered (zero if unknown)
}

// DeadLetters returns up to max messages of queue's dead-letter queue
// without removing them: they are read unacknowledged and go back when the
// inspection channel closes.
func (b *Bus) DeadLetters(ctx context.Context, queue string, max int) ([]DeadLetter, error) {
	if err := validSubject("queue", queue); err != nil {
		return nil, err
	}
	queue = b.physical(queue)
	if err := b.ensureQueue(ctx, queue); err != nil {
		return nil, err
	}
	ch, err := b.channel(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []DeadLetter
	for len(out) < max {
		d, ok, err := ch.Get(DeadLetterQueue(queue), false)
		if err != nil {
			return out, fmt.Errorf("rabbitmq: read dead-letter queue %s: %w", DeadLetterQueue(queue), err)
		}
		if !ok {
			break
		}
		dl := DeadLetter{Message: message(&d, queue), Queue: queue, Reason: headerString(d.Headers, hdrReason)}
		if q := headerString(d.Headers, hdrQueue); q != "" {
			dl.Queue = q
		}
		if n, ok := headerInt(d.Headers, hdrAttempt); ok {
			dl.Attempt = int(n)
		}
		if t, err := time.Parse(time.RFC3339Nano, headerString(d.Headers, hdrDeadAt)); err == nil {
			dl.At = t
		}
		if dl.Reason == "" {
			dl.Reason = headerString(d.Headers, "x-first-death-reason")
		}
		out = append(out, dl)
	}
	return out, nil
}

// PurgeDeadLetters drops every message of queue's dead-letter queue and
// returns how many there were.
func (b *Bus) PurgeDeadLetters(ctx context.Context, queue string) (int, error) {
	if err := validSubject("queue", queue); err != nil {
		return 0, err
	}
	queue = b.physical(queue)
	var n int
	err := b.declare(ctx, func(ch *amqp.Channel) error {
		var err error
		n, err = ch.QueuePurge(DeadLetterQueue(queue), false)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("rabbitmq: purge dead-letter queue %s: %w", DeadLetterQueue(queue), err)
	}
	return n, nil
}

// physical is the broker's name of a queue: the queue itself in the
// default namespace (so that deployments can name it, e.g. in a KEDA
// scaler), "<namespace>.<queue>" in any other.
func (b *Bus) physical(queue string) string {
	if b.opts.Prefix == "" || b.opts.Prefix == DefaultOptions().Prefix {
		return queue
	}
	return b.opts.Prefix + "." + queue
}
