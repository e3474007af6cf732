package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
		args["x-dead-letter-exchange"] = ""
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

// ensureQueue declares queue and its dead-letter queue once per process.
func (b *Bus) ensureQueue(ctx context.Context, queue string) error {
	b.declMu.Lock()
	_, ok := b.declared[queue]
	b.declMu.Unlock()
	if ok {
		return nil
	}
	err := b.declare(ctx, func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(DeadLetterQueue(queue), true, false, false, false, b.queueArgs(queue, true)); err != nil {
			return fmt.Errorf("rabbitmq: declare dead-letter queue %s: %w", DeadLetterQueue(queue), err)
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, b.queueArgs(queue, false)); err != nil {
			return fmt.Errorf("rabbitmq: declare queue %s: %w", queue, err)
		}
		return nil
	})
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

// consumer is one Consume call: it survives reconnects.
type consumer struct {
	b     *Bus
	queue string
	opts  bus.QueueOptions
	out   chan bus.Delivery
	ctx   context.Context
	win   *bus.Window
	tag   string // the consumer tag, so that a resize can cancel it
}

// consumerTags numbers the consumers of this process.
var consumerTags atomic.Int64

// Consume implements bus.Queue. Each call has its own AMQP channel with
// basic.qos(Prefetch), or the window's size. See the package
// documentation for how Lease maps onto AMQP.
//
// A window that changes is applied by consuming again on the same
// channel: basic.qos applies to consumers started after it, so the
// consumer is cancelled (what the broker already sent is still handed
// over), basic.qos sets the new size, and a new consumer starts.
// Unsettled deliveries stay valid across that (their tags belong to the
// channel); when the window shrinks, the new consumer may take up to the
// new size more while the old consumer's deliveries are still unsettled.
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
	ch, deliveries, err := c.subscribe()
	if err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go c.run(ch, deliveries)
	return c.out, nil
}

func (c *consumer) subscribe() (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := c.b.channel(c.ctx)
	if err != nil {
		return nil, nil, err
	}
	deliveries, err := c.start(ch)
	if err != nil {
		_ = ch.Close()
		return nil, nil, err
	}
	return ch, deliveries, nil
}

// start sets the window's size as the channel's prefetch and starts
// consuming.
func (c *consumer) start(ch *amqp.Channel) (<-chan amqp.Delivery, error) {
	size, _ := c.win.Size()
	if err := ch.Qos(min(size, 65535), 0, false); err != nil {
		return nil, fmt.Errorf("rabbitmq: set prefetch on %s: %w", c.queue, err)
	}
	// A tag of its own each time: a consumer is never started again
	// under the tag of one cancelled on the same channel.
	c.tag = "skein-" + strconv.FormatInt(consumerTags.Add(1), 10)
	deliveries, err := ch.ConsumeWithContext(context.Background(), c.queue, c.tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: consume %s: %w", c.queue, err)
	}
	return deliveries, nil
}

// resize applies a changed window: the consumer is cancelled, what the
// broker already sent it is handed over, and a consumer with the new
// prefetch starts on the same channel. It returns nil when the channel
// failed or ctx ended (the caller then subscribes again or stops).
func (c *consumer) resize(ch *amqp.Channel, deliveries <-chan amqp.Delivery) <-chan amqp.Delivery {
	if err := ch.Cancel(c.tag, false); err != nil {
		return nil
	}
	for d := range deliveries {
		if !c.deliver(ch, d) {
			return nil
		}
	}
	nd, err := c.start(ch)
	if err != nil {
		c.b.log.Warn("rabbitmq: resizing the consumer's window failed; subscribing again", "queue", c.queue, "err", err)
		return nil
	}
	return nd
}

func (c *consumer) run(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	defer c.b.wg.Done()
	defer close(c.out)
	for attempt := 0; ; {
		if ch != nil {
			// Unsettled deliveries go back to the queue with the channel.
			if deliveries = c.forward(ch, deliveries); deliveries != nil {
				closeConsumer(ch, deliveries)
			} else {
				_ = ch.Close()
			}
			ch = nil
		}
		if c.ctx.Err() != nil || c.b.isClosed() {
			return
		}
		var err error
		ch, deliveries, err = c.subscribe()
		if err != nil {
			if c.ctx.Err() != nil || c.b.isClosed() {
				return
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

// forward hands deliveries to the reader until the channel ends (or
// returns them with it, when the window's resize fails).
func (c *consumer) forward(ch *amqp.Channel, deliveries <-chan amqp.Delivery) <-chan amqp.Delivery {
	size, changed := c.win.Size()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok || !c.deliver(ch, d) {
				return deliveries
			}
		case <-changed:
			var now int
			now, changed = c.win.Size()
			if now == size {
				continue
			}
			size = now
			if deliveries = c.resize(ch, deliveries); deliveries == nil {
				return nil
			}
		case <-c.ctx.Done():
			return deliveries
		case <-c.b.done:
			return deliveries
		}
	}
}

// deliver hands one delivery to the reader; false when ctx ended or the
// bus closed first.
func (c *consumer) deliver(ch *amqp.Channel, d amqp.Delivery) bool {
	dl := c.newDelivery(ch, d)
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

func (c *consumer) newDelivery(ch *amqp.Channel, d amqp.Delivery) *delivery {
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
	dl := &delivery{c: c, ch: ch, d: d, attempt: attempt, msg: message(&d, c.queue)}
	dl.mu.Lock()
	dl.lease = time.AfterFunc(c.opts.Lease, dl.expire)
	dl.mu.Unlock()
	return dl
}

// delivery implements bus.Delivery.
type delivery struct {
	c       *consumer
	ch      *amqp.Channel
	d       amqp.Delivery
	msg     bus.Message
	attempt int

	mu      sync.Mutex
	settled bool
	lease   *time.Timer
}

func (d *delivery) Message() bus.Message { return d.msg }
func (d *delivery) Attempt() int         { return d.attempt }

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
// out: AMQP has no lease, so the bus keeps one.
func (d *delivery) expire() {
	if !d.settle() {
		return
	}
	d.c.b.log.Warn("rabbitmq lease expired; returning the message to its queue", "queue", d.c.queue, "attempt", d.attempt, "lease", d.c.opts.Lease)
	_ = d.ch.Nack(d.d.DeliveryTag, false, true)
}

func (d *delivery) errSettled(op string) error {
	return fmt.Errorf("rabbitmq: %s on %s (settled, lease expired or consumer closed): %w", op, d.c.queue, bus.ErrSettled)
}

func (d *delivery) Ack(ctx context.Context) error {
	if !d.settle() {
		return d.errSettled("ack")
	}
	if err := d.ch.Ack(d.d.DeliveryTag, false); err != nil {
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
		if err := d.ch.Nack(d.d.DeliveryTag, false, true); err != nil {
			return fmt.Errorf("rabbitmq: nak on %s (the message will be redelivered): %w", d.c.queue, err)
		}
		return nil
	}
	key := d.c.queue
	if delay > 0 {
		var err error
		key, err = d.c.b.ensureDelayQueue(ctx, d.c.queue, delay)
		if err != nil {
			_ = d.ch.Nack(d.d.DeliveryTag, false, true)
			return err
		}
	}
	p := d.copy()
	p.Headers[hdrAttempts] = int64(d.attempt)
	if err := d.c.b.publishConfirmed(ctx, []*pending{{key: key, msg: p}}); err != nil {
		_ = d.ch.Nack(d.d.DeliveryTag, false, true)
		return fmt.Errorf("rabbitmq: nak with delay on %s: %w", d.c.queue, err)
	}
	if err := d.ch.Ack(d.d.DeliveryTag, false); err != nil {
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
	if err := d.c.b.publishConfirmed(ctx, []*pending{{key: DeadLetterQueue(d.c.queue), msg: p}}); err != nil {
		_ = d.ch.Nack(d.d.DeliveryTag, false, true)
		return fmt.Errorf("rabbitmq: term on %s: dead-lettering failed, the message goes back to the queue: %w", d.c.queue, err)
	}
	d.c.b.log.Warn("rabbitmq message dead-lettered", "queue", d.c.queue, "dead_letter_queue", DeadLetterQueue(d.c.queue), "attempt", d.attempt, "reason", reason)
	if err := d.ch.Ack(d.d.DeliveryTag, false); err != nil {
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
	name := b.opts.Prefix + ".delay." + queue + "." + strconv.FormatInt(ms, 10)
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
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": queue,
	}
	err := b.declare(ctx, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rabbitmq: declare delay queue %s: %w", name, err)
	}
	b.declMu.Lock()
	b.declared[name] = time.Now()
	b.declMu.Unlock()
	return name, nil
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
