package natsbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
)

// TestBrokerBackWithAnEmptyStore: a nats-server that comes back without
// its store (memory storage, a volume that was not kept, a replaced
// machine) has none of Skein's streams. Clients that were connected
// before must carry on once they have reconnected, without a new client
// making the streams for them: publishing and enqueueing work again, the
// queue's consumer takes new tasks, and a subscription to the event
// stream reads what is published from then on.
//
// Found by trying it: a coordinator running across such a restart of its
// broker followed the job log from the position it had reached on the old
// stream, so it never read the first records of the new one: the jobs
// other coordinators accepted were unknown to it ("unknown job", "the job
// log has no spec of job … at position …"), and half the submits failed.
// Alone, its publishes failed with "no response from stream" until
// another client made the streams.
func TestBrokerBackWithAnEmptyStore(t *testing.T) {
	for name, bin := range natsServers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			backWithAnEmptyStore(t, bin)
		})
	}
}

func backWithAnEmptyStore(t *testing.T, bin string) {
	srv := startNATSProcess(t, bin)
	ctx := ctxFor(t, 2*time.Minute)
	b := connect(t, srv.URL())
	const q = "wiped"
	events, err := b.Subscribe(ctx, "wiped.>", bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As submit waits for a job's end: from a position on the old stream,
	// on a subject that has nothing before the loss. Reopened more than
	// once after it, it must still read the new stream from its start,
	// not from the old position again.
	ends, err := b.Subscribe(ctx, "wiped-end.>", bus.SubscribeOptions{From: 3})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Before: a few events (the subscription's position on the old stream
	// is past the first ones the new stream will have) and a task.
	for i := range 5 {
		if err := b.Publish(ctx, "wiped.before", bus.Message{Data: fmt.Appendf(nil, "before %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Enqueue(ctx, q, bus.Message{Key: "k", Data: []byte("task before")}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		want := fmt.Sprintf("before %d", i)
		if got := string(receive(t, ctx, events, "event "+want).Data); got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	}
	d := receiveTask(t, ctx, tasks, "the task before")
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	srv.WipeStore()
	srv.Restart()

	// Publishing works again, as a coordinator tries it: again and again,
	// each try bounded.
	again := func(what string, f func(context.Context) error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := f(actx)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the broker came back empty: still failing after 30s: %v", what, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	again("publish", func(ctx context.Context) error {
		return b.Publish(ctx, "wiped.after", bus.Message{Data: []byte("after")})
	})
	again("enqueue", func(ctx context.Context) error {
		return b.Enqueue(ctx, q, bus.Message{Key: "k", Data: []byte("task after")})
	})
	if got := string(receive(t, ctx, events, "the event published after").Data); got != "after" {
		t.Fatalf("event %q after the broker came back empty, want %q", got, "after")
	}
	// Kick the subscriptions once more, as a missed heartbeat does.
	natsbus.RestartSubscriptions(b.(*natsbus.Bus))
	again("publish the end", func(ctx context.Context) error {
		return b.Publish(ctx, "wiped-end.job", bus.Message{Data: []byte("end")})
	})
	if got := string(receive(t, ctx, ends, "the end published after").Data); got != "end" {
		t.Fatalf("end %q after the broker came back empty, want %q", got, "end")
	}
	d = receiveTask(t, ctx, tasks, "the task enqueued after")
	if got := string(d.Message().Data); got != "task after" {
		t.Fatalf("task %q after the broker came back empty, want %q", got, "task after")
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, ctx context.Context, ch <-chan bus.Message, what string) bus.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the subscription ended", what)
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not read within 30s", what)
	case <-ctx.Done():
		t.Fatalf("%s: %v", what, ctx.Err())
	}
	return bus.Message{}
}

func receiveTask(t *testing.T, ctx context.Context, ch <-chan bus.Delivery, what string) bus.Delivery {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the consumer ended", what)
		}
		return d
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not delivered within 30s", what)
	case <-ctx.Done():
		t.Fatalf("%s: %v", what, ctx.Err())
	}
	return nil
}
