package rabbitmq

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueDepth returns how many messages queue holds ready for a consumer
// (RabbitMQ's count leaves out those delivered and not yet acked). For
// metrics (pkg/metrics); one passive declare on a short-lived channel. A
// queue that does not exist yet is an error.
func (b *Bus) QueueDepth(ctx context.Context, queue string) (int, error) {
	if err := validSubject("queue", queue); err != nil {
		return 0, err
	}
	name := b.physical(queue)
	n := 0
	err := b.declare(ctx, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("rabbitmq: queue depth of %s: %w", queue, err)
	}
	return n, nil
}

// Connected reports whether the bus has a usable connection now.
func (b *Bus) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn != nil && !b.conn.IsClosed()
}

// Reconnects counts the connections the bus made after its first one.
func (b *Bus) Reconnects() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen == 0 {
		return 0
	}
	return b.gen - 1
}

// StreamReads counts the event-stream messages that the bus' stream
// subscriptions have taken from the broker (each delivery once, however
// many subscriptions it was for). For metrics, and for tests of how much
// the broker sends per event.
func (b *Bus) StreamReads() uint64 { return b.streamReads.Load() }
