package coordinator_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// testBus hands out connections to one test's own namespace on a broker:
// every connection sees the same streams and queues, and nothing of other
// tests.
type testBus struct {
	connect func(t *testing.T, name string) bus.Bus
}

// eachBus runs f on the in-process NATS server, the nats-server process
// and RabbitMQ (the last two from the environment scripts/test.sh sets).
// The subtests run one after another: the machine is small.
func eachBus(t *testing.T, f func(t *testing.T, tb *testBus)) {
	t.Run("embedded", func(t *testing.T) {
		srv := natstest.Server(t)
		f(t, &testBus{connect: func(t *testing.T, name string) bus.Bus {
			return natstest.Connect(t, srv, natsbus.Options{Name: name, Logger: busLogger(t)})
		}})
	})
	t.Run("nats-server", func(t *testing.T) {
		url := testenv.Require(t, testenv.NATSURL)
		prefix := "ct" + randHex(4)
		first := true
		f(t, &testBus{connect: func(t *testing.T, name string) bus.Bus {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := natsbus.Connect(ctx, url, natsbus.Options{Prefix: prefix, Name: name, Logger: busLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			if first {
				// Runs before this connection closes, after everything
				// the test started later.
				first = false
				t.Cleanup(func() { dropNATSStreams(t, b, prefix) })
			}
			return b
		}})
	})
	t.Run("rabbitmq", func(t *testing.T) {
		url := testenv.Require(t, testenv.AMQPURL)
		prefix := "ct" + randHex(4)
		t.Cleanup(func() { dropRabbitObjects(t, url, prefix) })
		f(t, &testBus{connect: func(t *testing.T, name string) bus.Bus {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, err := rabbitmq.Connect(ctx, url, rabbitmq.Options{Prefix: prefix, Logger: busLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}})
	})
}

// quietAfter is a test log that drops what is written once the test has
// ended: a bus may log from a timer after it is closed (a RabbitMQ
// delivery whose lease runs out), and t.Log then panics.
type quietAfter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *quietAfter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// busLogger is logger(t) for what may outlive the test.
func busLogger(t *testing.T) *slog.Logger {
	w := &quietAfter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dropNATSStreams removes the test's streams from the shared server.
func dropNATSStreams(t *testing.T, b bus.Bus, prefix string) {
	nb := b.(*natsbus.Bus)
	if nb.Conn().IsClosed() {
		return
	}
	js, err := jetstream.New(nb.Conn())
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []string{"_TASKS", "_EVENTS"} {
		if err := js.DeleteStream(ctx, strings.ToUpper(prefix)+s); err != nil {
			t.Logf("deleting stream %s%s: %v", prefix, s, err)
		}
	}
}

// dropRabbitObjects removes what the test's namespace declared on the
// shared broker: the event stream, the exchanges and the work queues.
func dropRabbitObjects(t *testing.T, url, prefix string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	for _, q := range []string{".events", ".default", ".default-reduce", ".default.dead", ".default-reduce.dead", ".manual", ".manual.dead", ".nobody", ".nobody.dead"} {
		if _, err := ch.QueueDelete(prefix+q, false, false, false); err != nil {
			if ch, err = conn.Channel(); err != nil { // a missing queue closes the channel
				return
			}
		}
	}
	for _, x := range []string{".events", ".broadcast", ".rpc", ".requeue"} {
		_ = ch.ExchangeDelete(prefix+x, false, false)
	}
}

// startRuntime runs a runtime with slots on b's default pool until the
// test ends.
func startRuntime(t *testing.T, b bus.Bus, slots int) {
	t.Helper()
	rt, err := runtime.New(b, runtime.Config{Slots: slots, Logger: busLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}

// newCoordinator starts a coordinator on b, serving the API, and returns
// it with kill: kill stops serving and closes it, which abandons its jobs
// as a SIGKILL would (no end record; tasks stay on the queue). It is
// killed when the test ends.
func newCoordinator(t *testing.T, b bus.Bus, cfg coordinator.Config) (*coordinator.Coordinator, func()) {
	t.Helper()
	return startCoordinator(t, b, cfg, false)
}

// startCoordinator is newCoordinator that first joins the namespace
// (Recover) when join is set.
func startCoordinator(t *testing.T, b bus.Bus, cfg coordinator.Config, join bool) (*coordinator.Coordinator, func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = busLogger(t)
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 50 * time.Millisecond
	}
	c, err := coordinator.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if join {
		rctx, rcancel := context.WithTimeout(ctx, time.Minute)
		_, err := c.Recover(rctx, time.Hour)
		rcancel()
		if err != nil {
			cancel()
			t.Fatal(err)
		}
	}
	if err := c.Serve(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { cancel(); c.Close() }) }
	t.Cleanup(kill)
	return c, kill
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logRecords returns the records on a job-log subject from the job's
// spec to the log's current end (a mark published now).
func logRecords(t *testing.T, b bus.Bus, subject string, from uint64) []bus.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	end, err := b.PublishSeq(ctx, "test.mark."+randHex(4), bus.Message{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.Subscribe(ctx, subject, bus.SubscribeOptions{From: from, To: end})
	if err != nil {
		t.Fatal(err)
	}
	var out []bus.Message
	for m := range ch {
		out = append(out, m)
	}
	if ctx.Err() != nil {
		t.Fatalf("reading %s to the log's end: %v", subject, ctx.Err())
	}
	return out
}

// sleepIter is iterdata for n "sleep" tasks of secs seconds returning
// their index.
func sleepIter(n int, secs float64) wire.Value {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"x":%g,"value":%d}`, secs, i)
	}
	sb.WriteByte(']')
	return wire.Value(sb.String())
}

// indexList is the JSON list [0,1,…,n-1].
func indexList(n int) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprint(&sb, i)
	}
	sb.WriteByte(']')
	return sb.String()
}
