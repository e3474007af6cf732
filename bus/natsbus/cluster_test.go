package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestClusterSettleDuringElection: on the 3-node cluster, the node that
// leads a queue's (replicated) consumer dies while a runtime holds a
// delivery. The runtime's ack, sent while the consumer elects a new
// leader, must still take effect: the message is not delivered again.
// (Without it the task runs twice, after its lease.)
func TestClusterSettleDuringElection(t *testing.T) {
	c := testenv.NATSClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("settle%d", time.Now().UnixNano()%1e9)
	open := func() *natsbus.Bus {
		b, err := natsbus.Connect(ctx, c.List(), natsbus.Options{Prefix: prefix, Replicas: 3, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	b := open()
	const queue, lease = "work", 8 * time.Second
	if err := b.Enqueue(ctx, queue, bus.Message{Data: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Consume(ctx, queue, bus.QueueOptions{Prefetch: 1, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	var d bus.Delivery
	select {
	case d = <-ds:
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, strings.ToUpper(prefix)+"_TASKS", "q-"+queue)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("consumer info: %v %+v", err, info)
	}
	leader := info.Cluster.Leader // skeintest-nN
	n, err := strconv.Atoi(strings.TrimPrefix(leader, "skeintest-n"))
	if err != nil || n < 1 || n > 3 {
		t.Fatalf("consumer leader %q is not a node of the test cluster", leader)
	}
	t.Logf("consumer q-%s is led by node %d; killing it", queue, n)
	c.KillNode(t, n)
	start := time.Now()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	err = d.Ack(actx)
	acancel()
	if err != nil {
		t.Fatalf("ack during the consumer's election: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("acked %s after the kill", time.Since(start).Round(time.Millisecond))
	// Settled: not delivered again after the lease.
	select {
	case again, ok := <-ds:
		if ok {
			t.Fatalf("the acked message came again (attempt %d)", again.Attempt())
		}
		t.Fatal("the consumer ended")
	case <-time.After(lease + 4*time.Second):
	}
	c.StartNode(t, n)
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

// TestClusterRequestRightAfterServe: on the 3-node cluster, a request sent
// through one node right after Serve returned on another finds its
// server. The other nodes learn of a new subscription a moment later
// (routes carry interest asynchronously); without Request's grace for
// "no responders" it failed (seen in CI as the conformance suite's
// RequestConcurrent never reaching its handler).
func TestClusterRequestRightAfterServe(t *testing.T) {
	c := testenv.NATSClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("rpc%d", time.Now().UnixNano()%1e9)
	open := func(url string) *natsbus.Bus {
		b, err := natsbus.Connect(ctx, url, natsbus.Options{Prefix: prefix, Replicas: 3, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	srv, cli := open(c.URLs[0]), open(c.URLs[2])
	for i := range 30 {
		subject := "svc" + strconv.Itoa(i)
		if err := srv.Serve(ctx, subject, func(context.Context, bus.Message) ([]byte, error) { return []byte("here"), nil }); err != nil {
			t.Fatal(err)
		}
		got, err := cli.Request(ctx, subject, []byte("?"))
		if err != nil || string(got) != "here" {
			t.Fatalf("request %d right after Serve on another node: %q, %v", i, got, err)
		}
	}
}

// TestClusterEnqueueLeaderLost: on the 3-node cluster, the node that
// leads the task stream stops answering (SIGSTOP, then SIGKILL) while a
// batch of tasks is on its way to it through another node. Their
// acknowledgements never come, and the connection, to a live node, stays
// up: Enqueue must fail in bounded time, not wait for ever (a
// coordinator's job stalled with it), and an Enqueue after the stream's
// election must succeed.
func TestClusterEnqueueLeaderLost(t *testing.T) {
	c := testenv.NATSClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("lost%d", time.Now().UnixNano()%1e9)
	// A first connection makes the streams and finds their leader.
	b0, err := natsbus.Connect(ctx, c.List(), natsbus.Options{Prefix: prefix, Replicas: 3, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(b0.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, strings.ToUpper(prefix)+"_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v %+v", err, info)
	}
	leader, err := strconv.Atoi(strings.TrimPrefix(info.Cluster.Leader, "skeintest-n"))
	if err != nil || leader < 1 || leader > 3 {
		t.Fatalf("stream leader %q is not a node of the test cluster", info.Cluster.Leader)
	}
	_ = b0.Close()
	// The publisher is connected to another node only.
	other := leader%3 + 1
	b, err := natsbus.Connect(ctx, c.URLs[other-1], natsbus.Options{Prefix: prefix, Replicas: 3, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Enqueue(ctx, "work", bus.Message{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	t.Logf("task stream led by node %d; publishing through node %d; pausing the leader", leader, other)
	t.Cleanup(func() { _, _ = c.Ctl("resume-node", strconv.Itoa(leader)) })
	if _, err := c.Ctl("pause-node", strconv.Itoa(leader)); err != nil {
		t.Fatal(err)
	}
	msgs := make([]bus.Message, 100)
	for i := range msgs {
		msgs[i] = bus.Message{Key: "k", Data: []byte(strconv.Itoa(i))}
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- b.Enqueue(ctx, "work", msgs...) }()
	time.Sleep(500 * time.Millisecond)
	c.KillNode(t, leader)
	select {
	case err := <-errc:
		t.Logf("enqueue while the leader was lost: %v after %s", err, time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("enqueue still waiting %s after the stream's leader was lost", time.Since(start).Round(time.Second))
	}
	// After the election the stream takes tasks again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := b.Enqueue(ctx, "work", bus.Message{Data: []byte("after")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enqueue after the election: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.StartNode(t, leader)
}
