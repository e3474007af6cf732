package rabbitmq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestHandBackThroughTheRequeueExchange: a consumer's Nak with a delay and
// Term reach the work queue and its dead-letter queue through the
// exchange "<prefix>.requeue", on a queue this release declared and on
// one an older release declared (dead-lettering through the default
// exchange), which the bus takes as it is rather than failing on its
// arguments.
func TestHandBackThroughTheRequeueExchange(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-requeue-%d", time.Now().UnixNano())
	b, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The queue "old" as an older release declared it.
	_, ch := adminChannel(t, url)
	old := prefix + ".old"
	if _, err := ch.QueueDeclare(old+".dead", true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(old, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum,
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": old + ".dead", "x-delivery-limit": int64(20)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, q := range []string{old, old + ".dead", prefix + ".new", prefix + ".new.dead"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})

	for _, q := range []string{"new", "old"} {
		if err := b.Enqueue(ctx, q, bus.Message{Data: []byte("task of " + q)}); err != nil {
			t.Fatalf("enqueue on %s: %v", q, err)
		}
		c, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, Lease: time.Minute})
		if err != nil {
			t.Fatalf("consume %s: %v", q, err)
		}
		next := func() bus.Delivery {
			select {
			case d := <-c:
				return d
			case <-ctx.Done():
				t.Fatalf("%s: no delivery", q)
				return nil
			}
		}
		d := next()
		start := time.Now()
		if err := d.Nak(ctx, 300*time.Millisecond); err != nil {
			t.Fatalf("%s: nak with a delay: %v", q, err)
		}
		d = next()
		if waited := time.Since(start); waited < 250*time.Millisecond || string(d.Message().Data) != "task of "+q {
			t.Fatalf("%s: after the nak: %q after %v; want the task again after the delay", q, d.Message().Data, waited)
		}
		if err := d.Term(ctx, "given up"); err != nil {
			t.Fatalf("%s: term: %v", q, err)
		}
		var dls []rabbitmq.DeadLetter
		for deadline := time.Now().Add(10 * time.Second); len(dls) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if dls, err = b.DeadLetters(ctx, q, 10); err != nil {
				t.Fatal(err)
			}
		}
		if len(dls) != 1 || dls[0].Reason != "given up" || string(dls[0].Message.Data) != "task of "+q {
			t.Fatalf("%s: dead letters %+v; want the task, given up", q, dls)
		}
	}
}

// TestConsumerDeclaresItsQueueAgain: a work queue deleted under its
// consumer (a broker that came back without its data, an operator) is
// declared again by the consumer as it subscribes again, so that what a
// producer that still takes the queue for declared publishes lands in it
// rather than nowhere.
func TestConsumerDeclaresItsQueueAgain(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-redeclare-%d", time.Now().UnixNano())
	producer, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	consumer, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := producer.Enqueue(ctx, "work", bus.Message{Data: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	c, err := consumer.Consume(ctx, "work", bus.QueueOptions{Prefetch: 1, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	next := func() bus.Delivery {
		select {
		case d := <-c:
			return d
		case <-ctx.Done():
			t.Fatal("no delivery")
			return nil
		}
	}
	if err := next().Ack(ctx); err != nil {
		t.Fatal(err)
	}
	conn, ch := adminChannel(t, url)
	q := prefix + ".work"
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(q, false, false, false)
		_, _ = ch.QueueDelete(q+".dead", false, false, false)
	})
	if _, err := ch.QueueDelete(q, false, false, false); err != nil {
		t.Fatal(err)
	}
	// The consumer is back once the queue exists again.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
			break
		} else if ch, err = conn.Channel(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the consumer did not declare its queue again")
		}
	}
	if err := producer.Enqueue(ctx, "work", bus.Message{Data: []byte("second")}); err != nil {
		t.Fatal(err)
	}
	if d := next(); string(d.Message().Data) != "second" {
		t.Fatalf("got %q, want second", d.Message().Data)
	}
}

// adminChannel is a connection of the broker's test user, closed when the
// test ends, and a channel on it.
func adminChannel(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return conn, ch
}
