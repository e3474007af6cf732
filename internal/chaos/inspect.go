package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// leftoverWait is how long the runtimes get, after every job ended, to
// drain what the queue still holds of ended jobs.
const leftoverWait = 20 * time.Second

// checkLeftovers checks that no task message stays on the pool's queue
// once every job has ended (issue 12, point 6): the runtimes still run,
// so whatever is left after leftoverWait stays for good.
func (r *round) checkLeftovers(ctx context.Context) {
	var count func(context.Context) (string, int, error)
	switch b := r.cfg.Broker.(type) {
	case *NATSServer:
		count = b.queued
	case *RabbitMQServer:
		count = b.queued
	default:
		return
	}
	var what string
	var n int
	wctx, cancel := context.WithTimeout(ctx, leftoverWait)
	defer cancel()
	err := waitFor(wctx, func() error {
		var err error
		what, n, err = count(wctx)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d task messages queued", n)
		}
		return nil
	})
	r.report.Leftover = n
	if err != nil && n == 0 {
		r.note("post-mortem: counting the queued task messages: %v", err)
		return
	}
	if n > 0 {
		r.problem("queue: %d task messages stay queued %s after every job ended (%s)", n, leftoverWait, what)
	}
}

// queued counts the messages on Skein's task stream and the pool
// consumer's pending and unacknowledged ones.
func (s *NATSServer) queued(ctx context.Context) (string, int, error) {
	nc, err := nats.Connect(s.URL(), nats.Name("skein-chaos"))
	if err != nil {
		return "", 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", 0, err
	}
	st, err := js.Stream(ctx, "SKEIN_TASKS")
	if err != nil {
		return "", 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return "", 0, err
	}
	what := fmt.Sprintf("stream SKEIN_TASKS holds %d messages, sequences %d..%d", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
	if c, err := st.Consumer(ctx, "q-default"); err == nil {
		if ci, err := c.Info(ctx); err == nil {
			what += fmt.Sprintf("; consumer q-default: %d pending, %d unacknowledged, ack floor %d, delivered %d",
				ci.NumPending, ci.NumAckPending, ci.AckFloor.Stream, ci.Delivered.Stream)
		}
	}
	return what, int(info.State.Msgs), nil
}

// queued counts the ready messages of the pool's queue and its
// dead-letter queue.
func (s *RabbitMQServer) queued(ctx context.Context) (string, int, error) {
	conn, err := amqp.Dial(s.URL())
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	n := 0
	what := ""
	for _, q := range []string{"default", "default.dead"} {
		ch, err := conn.Channel()
		if err != nil {
			return "", 0, err
		}
		qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		ch.Close()
		if err != nil {
			return "", 0, fmt.Errorf("queue %s: %w", q, err)
		}
		n += qi.Messages
		what += fmt.Sprintf("queue %s: %d ready, %d consumers; ", q, qi.Messages, qi.Consumers)
	}
	return what, n, nil
}
