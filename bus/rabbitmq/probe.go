package rabbitmq

import (
	"context"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/internal/retry"
)

// ensureConsumable declares queue and, the first time this process
// consumes a quorum queue, waits on a connection of its own until the
// broker has started the queue.
//
// A quorum queue's declare answers a second declarer at once, while the
// first declarer's declare is still starting the queue's Raft members:
// a basic.consume in that window crashes the channel on the broker
// ({badmatch,{error,noproc}} in rabbit_quorum_queue:consume, 3.10),
// which answers 541 INTERNAL_ERROR, a connection error. On the bus's
// own connection that would hand back every delivery its other
// consumers hold, tasks a runtime goes on running while another one is
// given them: two runtimes that start together on a new pool ran tasks
// twice (TestLongTasksSpreadOverRuntimes in CI). The probe's connection
// takes the crash instead, and is dialled again until the consume goes
// through. A queue that has messages or consumers is started (its
// members answered the declare's count), and is not probed.
func (b *Bus) ensureConsumable(ctx context.Context, queue string) error {
	if err := b.ensureQueue(ctx, queue); err != nil {
		return err
	}
	if !b.quorum {
		return nil // a classic queue is started when its declare returns
	}
	b.declMu.Lock()
	started := b.started[queue]
	b.declMu.Unlock()
	if started {
		return nil
	}
	if err := b.probe(ctx, queue); err != nil {
		return err
	}
	b.declMu.Lock()
	b.started[queue] = true
	b.declMu.Unlock()
	return nil
}

// probe consumes queue on a connection of its own and cancels at once.
// The broker would hand the probe's consumer a message ready in the
// queue (RabbitMQ 3.10 ignores an x-credit of 0 on AMQP 0-9-1), and
// give it back with one more delivery: the task would count a retry it
// never had. So a queue that the passive declare finds with messages or
// consumers, started for certain, is not probed; one found empty is,
// and only a message that comes between that declare and the cancel,
// within a round trip, is handed to the probe: it goes back at once.
func (b *Bus) probe(ctx context.Context, queue string) error {
	b.mu.Lock()
	n := b.nodes[b.node]
	b.mu.Unlock()
	return retry.Do(ctx, retry.Policy{Initial: 20 * time.Millisecond, Max: time.Second, Tries: 10}, func() error {
		conn, err := b.dialNode(ctx, n)
		if err != nil {
			return retry.Permanent(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("rabbitmq: probe %s: open channel: %w", queue, err)
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			return internalOr(fmt.Errorf("rabbitmq: probe %s: %w", queue, err))
		}
		if q.Messages > 0 || q.Consumers > 0 {
			return nil
		}
		return probeConsume(ch, queue)
	})
}

// probeConsume starts a consumer on queue and cancels it, giving back
// what it was handed meanwhile.
func probeConsume(ch *amqp.Channel, queue string) error {
	if err := ch.Qos(1, 0, false); err != nil {
		return internalOr(fmt.Errorf("rabbitmq: probe %s: set prefetch: %w", queue, err))
	}
	tag := "skein-probe-" + strconv.FormatInt(consumerTags.Add(1), 10)
	deliveries, err := ch.ConsumeWithContext(context.Background(), queue, tag, false, false, false, false, nil)
	if err != nil {
		return internalOr(fmt.Errorf("rabbitmq: probe %s: %w", queue, err))
	}
	if err := ch.Cancel(tag, false); err != nil {
		return internalOr(fmt.Errorf("rabbitmq: probe %s: cancel: %w", queue, err))
	}
	for d := range deliveries { // closed by the cancel
		_ = d.Nack(false, true)
	}
	return nil
}
