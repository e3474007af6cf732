package natsbus_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestLapsedPullRequestKeepsItsMessages: a pull request whose end the
// server has not sent when the bus stops waiting for it (its 408 late on
// a busy machine, or the request late to reach a cluster's consumer
// leader, which counts the expiry from then) may still bring messages:
// the leader, on another node, learns only a moment later that the
// request's inbox has nobody left. They are delivered, not dropped with
// the request's subscription to come back after their lease; on a
// loaded three-node cluster the last four of a request's 194 messages
// were lost that way for 30 s (QueueWindowChurn). Here the server is
// given a longer expiry than the bus waits, so that every request lapses
// while the leader still holds it, and messages trickle in meanwhile.
func TestLapsedPullRequestKeepsItsMessages(t *testing.T) {
	c := testenv.NATSClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connectTo := func(url string, o natsbus.Options) bus.Bus {
		o.Replicas, o.Logger = 3, slog.New(slog.NewTextHandler(tlog{t}, nil))
		b, err := natsbus.Connect(ctx, url, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	q := "lapse-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var buses []bus.Bus
	for _, u := range c.URLs {
		buses = append(buses, connectTo(u, natsbus.WithPullTimes(natsbus.Options{}, 20*time.Millisecond, 2*time.Second)))
	}
	pub := connectTo(c.URLs[0], natsbus.Options{})
	// A consumer on each node: on two of them the consumer's leader is
	// another node's.
	got := make(chan string, 1000)
	for _, b := range buses {
		ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 4, Lease: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for d := range ds {
				if d.Attempt() != 1 {
					t.Errorf("message %s: attempt %d, want 1", d.Message().Data, d.Attempt())
				}
				_ = d.Ack(ctx)
				got <- string(d.Message().Data)
			}
		}()
	}
	const n = 300
	sent := make(map[string]time.Time, n)
	for i := range n {
		body := strconv.Itoa(i)
		if err := pub.Enqueue(ctx, q, bus.Message{Data: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		sent[body] = time.Now()
		time.Sleep(7 * time.Millisecond)
	}
	deadline := time.After(5 * time.Second)
	for len(sent) > 0 {
		select {
		case body := <-got:
			delete(sent, body)
		case <-deadline:
			t.Fatalf("%d of %d messages not delivered within 5 s of the last enqueue (their lease is 30 s)", len(sent), n)
		}
	}
}
