package rabbitmq_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestConsumeNewQueueConcurrently has two buses consume a queue neither
// has declared before, at the same moment (two runtimes starting on one
// pool), while each holds a delivery of another queue. The consume must
// not cost the connection: a lost connection hands its deliveries back
// to the broker, and a runtime that ran them anyway ran them twice.
func TestConsumeNewQueueConcurrently(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	rounds := 20
	for r := range rounds {
		prefix := fmt.Sprintf("skein-newq-%d-%d", time.Now().UnixNano(), r)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var (
			wg   sync.WaitGroup
			logs [2]*testLogger
			errs [2]error
		)
		for i := range 2 {
			b, lg := connect(t, url, rabbitmq.Options{Prefix: prefix})
			logs[i] = lg
			if err := b.Enqueue(ctx, "held", bus.Message{Key: "k", Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			held, err := b.Consume(ctx, "held", bus.QueueOptions{Prefetch: 1})
			if err != nil {
				t.Fatal(err)
			}
			<-held
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = b.Consume(ctx, "fresh", bus.QueueOptions{Prefetch: 1})
			}()
		}
		wg.Wait()
		cancel()
		for i := range 2 {
			if errs[i] != nil {
				t.Errorf("round %d, bus %d: consume: %v", r, i, errs[i])
			}
			if s := logs[i].String(); strings.Contains(s, "connection lost") {
				t.Fatalf("round %d, bus %d lost its connection:\n%s", r, i, s)
			}
		}
	}
}

// TestProbeSkipsQueueWithMessages consumes, from a process that has not
// consumed it before, a queue with messages waiting: the queue is started
// (it took them), so it is not probed, and its messages come as first
// attempts. A probe's consumer would have been handed one and given it
// back as a redelivery.
func TestProbeSkipsQueueWithMessages(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-probe-%d", time.Now().UnixNano())
	a, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if err := a.Enqueue(ctx, "q", bus.Message{Key: "k", Data: []byte{byte('a' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ds, err := b.Consume(ctx, "q", bus.QueueOptions{Prefetch: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d := <-ds
		if at := d.Attempt(); at != 1 {
			t.Errorf("message %s: attempt %d, want 1", d.Message().Data, at)
		}
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeaseAfterClose holds a delivery, unsettled, while its bus closes:
// the broker takes the message back with the connection, so the bus's
// lease on it ends there too. Its timer used to fire later all the same
// and log a lease expiry for a delivery of a closed bus (after the test
// had ended: a panic in CI).
func TestLeaseAfterClose(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-leaseclose-%d", time.Now().UnixNano())
	b, lg := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Enqueue(ctx, "q", bus.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	const lease = 300 * time.Millisecond
	ds, err := b.Consume(ctx, "q", bus.QueueOptions{Prefetch: 1, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	d := <-ds
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * lease)
	if s := lg.String(); strings.Contains(s, "lease expired") {
		t.Errorf("a lease expired after the bus closed:\n%s", s)
	}
	if err := d.Ack(ctx); err == nil {
		t.Error("ack of a delivery of a closed bus: nil error")
	}
}
