package rabbitmq

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
)

// listenBuffer is how many broadcasts wait for a slow reader before new
// ones are dropped.
const listenBuffer = 256

// Notify implements bus.Broadcast: a transient publish, without confirm,
// to the topic exchange "<prefix>.broadcast".
func (b *Bus) Notify(ctx context.Context, subject string, data []byte) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if err := validSubject("subject", subject); err != nil {
		return err
	}
	if err := b.checkSize("broadcast on "+subject, len(data)); err != nil {
		return err
	}
	ch, err := b.publisher(ctx)
	if err != nil {
		return err
	}
	p := publishing(bus.Message{Data: data}, false)
	// The publisher channel is in confirm mode; the confirm is not awaited.
	if _, err := ch.PublishWithDeferredConfirmWithContext(ctx, b.broadcastName(), subject, false, false, p); err != nil {
		return fmt.Errorf("rabbitmq: notify on %s: %w", subject, err)
	}
	return nil
}

// Listen implements bus.Broadcast with a server-named, exclusive,
// auto-delete queue bound to "<prefix>.broadcast" by pattern. After a
// reconnect a new queue is bound; broadcasts sent meanwhile are lost.
func (b *Bus) Listen(ctx context.Context, pattern string) (<-chan bus.Message, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	if err := validPattern(pattern); err != nil {
		return nil, err
	}
	out := make(chan bus.Message, listenBuffer)
	// 541 INTERNAL_ERROR closes the whole connection: another call on it
	// (a consumer of a quorum queue declared a moment ago, whose members
	// are still starting) may have drawn it. Tried again once the
	// connection is back, as a stream's attach is.
	var (
		ch         *amqp.Channel
		deliveries <-chan amqp.Delivery
	)
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Tries: 6}, func() error {
		var err error
		ch, deliveries, err = b.listen(ctx, pattern)
		if err != nil {
			return internalOr(err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		for attempt := 0; ; {
			if ch != nil {
				b.forwardBroadcasts(ctx, pattern, deliveries, out)
				closeConsumer(ch, deliveries)
				ch = nil
			}
			if ctx.Err() != nil || b.isClosed() {
				return
			}
			ch, deliveries, err = b.listen(ctx, pattern)
			if err != nil {
				if !b.backoff(ctx, attempt) {
					return
				}
				attempt++
				continue
			}
			attempt = 0
		}
	}()
	return out, nil
}

func (b *Bus) listen(ctx context.Context, pattern string) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := b.channel(ctx)
	if err != nil {
		return nil, nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, bindingKey(pattern), b.broadcastName(), false, nil)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.ConsumeWithContext(context.Background(), q.Name, "", true, true, false, false, nil)
	}
	if err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("rabbitmq: listen %s: %w", pattern, err)
	}
	return ch, deliveries, nil
}

func (b *Bus) forwardBroadcasts(ctx context.Context, pattern string, deliveries <-chan amqp.Delivery, out chan bus.Message) {
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			if !match(pattern, d.RoutingKey) {
				continue
			}
			select {
			case out <- message(&d, d.RoutingKey):
			default:
				b.log.Debug("rabbitmq broadcast dropped: slow listener", "pattern", pattern, "subject", d.RoutingKey)
			}
		case <-ctx.Done():
			return
		case <-b.done:
			return
		}
	}
}
