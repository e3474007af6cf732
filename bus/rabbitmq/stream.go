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
// after the last offset it saw. It reads on a consumer of its own from
// its start position and, when it has no end (To), hands over to the
// bus' shared tail once it has caught up (see tail).
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

	joined *tailSub // its place in the tail, or nil
	rejoin int64    // join the tail once next reaches this offset; -1 at once
	// tailEnded: the tail let the subscription go because its consumer
	// ended (a lost connection), not because the subscription fell behind.
	tailEnded bool
}

// Subscribe implements bus.Stream. A subscriber reads the one event
// stream from its start point (x-stream-offset From-1, "next", or the
// second before Since) on a consumer of its own and keeps the messages
// whose subject matches pattern and, without From, whose publish time is
// at or after Since. A subscription with To sees every offset, so it
// ends at To by reading up to it. One without To joins the bus' shared
// reader of the stream's tail at once and, when its own consumer reaches
// the first offset the tail read after that, closes its consumer and
// takes its messages from the tail (so a bus with many subscriptions
// reads each live event once; see tail for flow control).
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
	s := &subscription{b: b, pattern: pattern, since: opts.Since, ctx: ctx, out: make(chan bus.Message), next: -1, started: time.Now(), rejoin: -1}
	if opts.From > 0 {
		s.since, s.next = time.Time{}, int64(opts.From-1)
	}
	s.to = int64(opts.To) - 1
	if opts.To > 0 && opts.From > opts.To {
		close(s.out)
		return s.out, nil
	}
	s.maybeJoin() // before the own consumer attaches: the tail starts meanwhile
	ch, deliveries, err := s.subscribe()
	if err != nil {
		s.leave()
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
	defer s.leave()
	dropped := false // the last consumer ended by itself (a lost connection)
	for attempt := 0; ; {
		if ch != nil {
			handover := s.forward(ch, deliveries)
			closeConsumer(ch, deliveries)
			ch = nil
			dropped = !handover
			if handover {
				if !s.fromTail() {
					return
				}
				dropped = s.tailEnded
			}
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
		if dropped {
			s.b.log.Info("rabbitmq stream subscriber resubscribed", "pattern", s.pattern, "offset", s.offset())
		} else {
			s.b.log.Debug("rabbitmq stream subscriber left the shared tail; reading on its own", "pattern", s.pattern, "offset", s.offset())
		}
	}
}

// leave gives the subscription's place in the tail up.
func (s *subscription) leave() {
	if s.joined != nil {
		s.b.tail.leave(s.joined)
		s.joined = nil
	}
}

// detached notes that the tail let the subscription go (overflow: the
// offset that did not fit; -1: the tail ended) and when to join again:
// once its own consumer has read past that offset, or past its position
// now, so that a tail that cannot attach is not tried for every message.
func (s *subscription) detached(overflow int64) {
	s.joined = nil
	s.tailEnded = overflow < 0
	if s.tailEnded {
		s.rejoin = max(s.next, 0) + 1
	} else {
		s.rejoin = overflow
	}
}

// maybeJoin joins the tail when the subscription has no end and has read
// far enough since it was last detached.
func (s *subscription) maybeJoin() {
	if s.joined == nil && s.to < 0 && (s.rejoin < 0 || s.next >= s.rejoin) {
		s.joined = s.b.tail.join(s.pattern)
		s.rejoin = -1
	}
}

// forward reads the subscription's own consumer. It returns true when
// the subscription has caught up with the tail and takes its messages
// from there on (fromTail); false when the consumer ended, the
// subscription ended at To, or ctx or the bus is done.
func (s *subscription) forward(ch *amqp.Channel, deliveries <-chan amqp.Delivery) bool {
	ack := newAcker(ch, s.b.opts.StreamPrefetch)
	for {
		s.maybeJoin()
		var ready <-chan struct{}
		if s.joined != nil {
			ready = s.joined.ready
		}
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-deliveries:
			if !ok {
				return false
			}
		case <-ready:
			// The tail buffered something or let go; only the latter
			// matters before the hand-over.
			if _, gone, overflow := s.b.tail.joinedAt(s.joined); gone {
				s.detached(overflow)
			}
			continue
		case <-s.ctx.Done():
			return false
		case <-s.b.done:
			return false
		}
		s.b.streamReads.Add(1)
		// Stream queues need acks to grant credit; the stream keeps the
		// message either way.
		ack.ack(d.DeliveryTag)
		f := s.floor()
		off, ok := headerInt(d.Headers, hdrOffset)
		if !ok || off < 0 {
			s.b.log.Warn("rabbitmq stream delivery without an offset; skipped", "pattern", s.pattern)
			continue
		}
		if s.next >= 0 && off < s.next {
			continue // before From, or already handed out before a resubscribe
		}
		if s.joined != nil {
			at, gone, overflow := s.b.tail.joinedAt(s.joined)
			if gone {
				s.detached(overflow)
			} else if at >= 0 && off >= at {
				// The tail holds every match from at on: nothing before
				// off is this consumer's to deliver any more, nothing from
				// off on is missing from the tail.
				if s.next < 0 {
					s.next = off
				}
				return true
			}
		}
		s.next = off + 1
		if s.to >= 0 && off > s.to {
			s.ended = true
			return false
		}
		if match(s.pattern, d.RoutingKey) {
			m := message(&d, d.RoutingKey)
			m.Seq = uint64(off) + 1
			if f.IsZero() || !m.Time.Before(f) {
				select {
				case s.out <- m:
				case <-s.ctx.Done():
					return false
				case <-s.b.done:
					return false
				}
			}
		}
		if s.to >= 0 && off >= s.to {
			s.ended = true
			return false
		}
	}
}

// fromTail delivers what the tail buffers for the subscription until the
// tail lets it go (true: read on from s.next on a consumer of its own)
// or ctx or the bus is done (false). Offsets below s.next were delivered
// by the subscription's own consumer and are skipped.
func (s *subscription) fromTail() bool {
	// What the tail buffered before the hand-over may have signalled
	// already (forward took the signal): take first, then wait.
	for first := true; ; first = false {
		if !first {
			select {
			case <-s.joined.ready:
			case <-s.ctx.Done():
				return false
			case <-s.b.done:
				return false
			}
		}
		ms, gone, overflow := s.b.tail.take(s.joined)
		for _, m := range ms {
			off := int64(m.Seq) - 1
			if off < s.next {
				continue
			}
			s.next = off + 1
			if f := s.floor(); !f.IsZero() && m.Time.Before(f) {
				continue
			}
			select {
			case s.out <- m:
			case <-s.ctx.Done():
				return false
			case <-s.b.done:
				return false
			}
		}
		if gone {
			s.detached(overflow)
			return true
		}
	}
}

// internalOr returns err as retryable when the broker answered 541
// INTERNAL_ERROR, or 406 PRECONDITION_FAILED because the stream's member
// on this node is not started yet (a new stream, a node that has just
// joined), or when the connection closed under the call (another call's
// 541 on the same connection: a subscription attaches twice, its own
// consumer and the shared tail, and both meet a new stream), else as
// permanent.
func internalOr(err error) error {
	var ae *amqp.Error
	if errors.Is(err, amqp.ErrClosed) {
		return err
	}
	if errors.As(err, &ae) && (ae.Code == amqp.InternalError ||
		ae.Code == amqp.PreconditionFailed && strings.Contains(ae.Reason, "does not have a replica on the local node")) {
		return err
	}
	return retry.Permanent(err)
}
