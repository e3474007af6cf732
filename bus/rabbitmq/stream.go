package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
)

var errNoStreams = errors.New("rabbitmq: the broker has no stream queues (RabbitMQ 3.9 or newer is needed for bus.Stream)")

// Publish implements bus.Stream: msg goes to the topic exchange
// "<prefix>.events" with subject as routing key, which routes it to the
// stream queue of the same name. It returns once the broker confirmed it.
func (b *Bus) Publish(ctx context.Context, subject string, msg bus.Message) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if !b.streams {
		return errNoStreams
	}
	if err := validSubject("subject", subject); err != nil {
		return err
	}
	if err := b.checkSize("event on "+subject, len(msg.Data)); err != nil {
		return err
	}
	p := &pending{exchange: b.eventsName(), key: subject, msg: publishing(msg, true)}
	if err := b.publishConfirmed(ctx, []*pending{p}); err != nil {
		return fmt.Errorf("rabbitmq: publish on %s: %w", subject, err)
	}
	return nil
}

// PublishSeq implements bus.Stream. An AMQP confirm carries no stream
// offset, so the message is read back: a consumer attaches at the
// stream's end ("next") before the publish, and the message's offset is
// that of the first delivery carrying the nonce header it was published
// with. The cost is a channel and a stream consumer per call, and reading
// every message that other publishers store in the meantime (the
// confirm's round trip): fine for a job's spec or a recovery mark, too
// much for every event. If the read back fails (a connection drop) the
// message may be stored although an error is returned.
func (b *Bus) PublishSeq(ctx context.Context, subject string, msg bus.Message) (uint64, error) {
	if b.isClosed() {
		return 0, bus.ErrClosed
	}
	if !b.streams {
		return 0, errNoStreams
	}
	if err := validSubject("subject", subject); err != nil {
		return 0, err
	}
	if err := b.checkSize("event on "+subject, len(msg.Data)); err != nil {
		return 0, err
	}
	// Attach at the stream's end before publishing.
	ch, deliveries, err := b.attach(ctx, "next", "publish on "+subject+": reading the stream's end")
	if err != nil {
		return 0, err
	}
	defer closeConsumer(ch, deliveries)
	var nb [12]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	p := &pending{exchange: b.eventsName(), key: subject, msg: publishing(msg, true)}
	p.msg.Headers[hdrNonce] = nonce
	if err := b.publishConfirmed(ctx, []*pending{p}); err != nil {
		return 0, fmt.Errorf("rabbitmq: publish on %s: %w", subject, err)
	}
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return 0, fmt.Errorf("rabbitmq: publish on %s: the stream consumer closed before the message came back (it is stored; its position is unknown)", subject)
			}
			_ = ch.Ack(d.DeliveryTag, false)
			if headerString(d.Headers, hdrNonce) != nonce {
				continue
			}
			off, ok := headerInt(d.Headers, hdrOffset)
			if !ok || off < 0 {
				return 0, fmt.Errorf("rabbitmq: publish on %s: the broker gave no stream offset", subject)
			}
			return uint64(off) + 1, nil
		case <-ctx.Done():
			return 0, fmt.Errorf("rabbitmq: publish on %s: reading the message back: %w", subject, ctx.Err())
		case <-b.done:
			return 0, bus.ErrClosed
		}
	}
}

// subscription is one Subscribe call: it survives reconnects by resuming
// after the last offset it saw.
type subscription struct {
	b       *Bus
	pattern string
	since   time.Time
	ctx     context.Context
	out     chan bus.Message
	next    int64     // offset to resume from; -1 before the first message
	started time.Time // when Subscribe was called
	resumed bool      // subscribed again after a drop
	to      int64     // last offset to deliver (SubscribeOptions.To - 1); -1: none
	ended   bool      // the offset before to was read: the subscription is over
}

// Subscribe implements bus.Stream. Every subscriber reads the one event
// stream from its start point (x-stream-offset From-1, "next", or the
// second before Since) and keeps the messages whose subject matches
// pattern and, without From, whose publish time is at or after Since. It
// sees every offset, so it ends at To by reading up to it.
// Message.Seq is the stream offset plus one (so that no position is 0).
func (b *Bus) Subscribe(ctx context.Context, pattern string, opts bus.SubscribeOptions) (<-chan bus.Message, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	if !b.streams {
		return nil, errNoStreams
	}
	if err := validPattern(pattern); err != nil {
		return nil, err
	}
	s := &subscription{b: b, pattern: pattern, since: opts.Since, ctx: ctx, out: make(chan bus.Message), next: -1, started: time.Now()}
	if opts.From > 0 {
		s.since, s.next = time.Time{}, int64(opts.From-1)
	}
	s.to = int64(opts.To) - 1
	if opts.To > 0 && opts.From > opts.To {
		close(s.out)
		return s.out, nil
	}
	ch, deliveries, err := s.subscribe()
	if err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go s.run(ch, deliveries)
	return s.out, nil
}

func (s *subscription) offset() any {
	switch {
	case s.next >= 0:
		return s.next
	case s.since.IsZero() && !s.resumed:
		return "next"
	default:
		// Stream timestamps have a resolution of one second and select a
		// chunk, so start a little early and filter by publish time.
		return s.floor().Add(-time.Second).Truncate(time.Second)
	}
}

// floor is the earliest publish time handed out: Since, or, after a
// reconnect that came before any message, the time of Subscribe.
func (s *subscription) floor() time.Time {
	if s.since.IsZero() && s.resumed && s.next < 0 {
		return s.started
	}
	return s.since
}

func (s *subscription) subscribe() (*amqp.Channel, <-chan amqp.Delivery, error) {
	return s.b.attach(s.ctx, s.offset(), "subscribe "+s.pattern)
}

// attach opens a channel with a consumer on the event stream from offset
// (an x-stream-offset value). A stream the broker has only just created
// (the first of a new node, above all) may refuse the first attach with
// 541 INTERNAL_ERROR, which closes the connection: that is tried again
// once the connection is back, as is a node whose member of the stream
// has not started yet. what says in errors what the attach was
// for.
func (b *Bus) attach(ctx context.Context, offset any, what string) (*amqp.Channel, <-chan amqp.Delivery, error) {
	var (
		ch         *amqp.Channel
		deliveries <-chan amqp.Delivery
	)
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Tries: 6}, func() error {
		var err error
		if ch, err = b.channel(ctx); err != nil {
			return retry.Permanent(err)
		}
		if err := ch.Qos(b.opts.StreamPrefetch, 0, false); err != nil {
			_ = ch.Close()
			return internalOr(fmt.Errorf("rabbitmq: %s: set prefetch on stream %s: %w", what, b.eventsName(), err))
		}
		deliveries, err = ch.ConsumeWithContext(context.Background(), b.eventsName(), "", false, false, false, false, amqp.Table{hdrOffset: offset})
		if err != nil {
			_ = ch.Close()
			return internalOr(fmt.Errorf("rabbitmq: %s on stream %s: %w", what, b.eventsName(), err))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return ch, deliveries, nil
}

func (s *subscription) run(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	defer s.b.wg.Done()
	defer close(s.out)
	for attempt := 0; ; {
		if ch != nil {
			s.forward(ch, deliveries)
			closeConsumer(ch, deliveries)
			ch = nil
		}
		if s.ended || s.ctx.Err() != nil || s.b.isClosed() {
			return
		}
		s.resumed = true
		var err error
		ch, deliveries, err = s.subscribe()
		if err != nil {
			if s.ctx.Err() != nil || s.b.isClosed() {
				return
			}
			s.b.log.Warn("rabbitmq stream resubscribe failed", "pattern", s.pattern, "err", err)
			if !s.b.backoff(s.ctx, attempt) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		s.b.log.Info("rabbitmq stream subscriber resubscribed", "pattern", s.pattern, "offset", s.offset())
	}
}

func (s *subscription) forward(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-deliveries:
			if !ok {
				return
			}
		case <-s.ctx.Done():
			return
		case <-s.b.done:
			return
		}
		// Stream queues need acks to grant credit; the stream keeps the
		// message either way.
		_ = ch.Ack(d.DeliveryTag, false)
		f := s.floor()
		off, ok := headerInt(d.Headers, hdrOffset)
		if !ok || off < 0 {
			s.b.log.Warn("rabbitmq stream delivery without an offset; skipped", "pattern", s.pattern)
			continue
		}
		if s.next >= 0 && off < s.next {
			continue // before From, or already handed out before a resubscribe
		}
		s.next = off + 1
		if s.to >= 0 && off > s.to {
			s.ended = true
			return
		}
		if match(s.pattern, d.RoutingKey) {
			m := message(&d, d.RoutingKey)
			m.Seq = uint64(off) + 1
			if f.IsZero() || !m.Time.Before(f) {
				select {
				case s.out <- m:
				case <-s.ctx.Done():
					return
				case <-s.b.done:
					return
				}
			}
		}
		if s.to >= 0 && off >= s.to {
			s.ended = true
			return
		}
	}
}

// internalOr returns err as retryable when the broker answered 541
// INTERNAL_ERROR, or 406 PRECONDITION_FAILED because the stream's member
// on this node is not started yet (a new stream, a node that has just
// joined), else as permanent.
func internalOr(err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) && (ae.Code == amqp.InternalError ||
		ae.Code == amqp.PreconditionFailed && strings.Contains(ae.Reason, "does not have a replica on the local node")) {
		return err
	}
	return retry.Permanent(err)
}
