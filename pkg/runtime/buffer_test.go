package runtime_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// eachBus runs f on a connection to the in-process NATS server, the
// nats-server process and RabbitMQ, each in a namespace of its own.
func eachBus(t *testing.T, f func(t *testing.T, b bus.Bus)) {
	t.Run("embedded", func(t *testing.T) { f(t, setup(t)) })
	t.Run("nats-server", func(t *testing.T) {
		url := testenv.Require(t, testenv.NATSURL)
		prefix := "rt" + randHex(4)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := natsbus.Connect(ctx, url, natsbus.Options{Prefix: prefix, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			js, err := jetstream.New(b.Conn())
			if err == nil {
				dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				for _, s := range []string{"_TASKS", "_EVENTS"} {
					_ = js.DeleteStream(dctx, strings.ToUpper(prefix)+s)
				}
			}
			_ = b.Close()
		})
		f(t, b)
	})
	t.Run("rabbitmq", func(t *testing.T) {
		url := testenv.Require(t, testenv.AMQPURL)
		f(t, rabbitBus(t, url, rabbitmq.Options{Prefix: "rt" + randHex(4)}))
	})
}

// rabbitBus connects to the RabbitMQ at url with opts (a Prefix of the
// test's own) and removes the prefix's queues and exchanges at the end.
func rabbitBus(t *testing.T, url string, opts rabbitmq.Options) *rabbitmq.Bus {
	t.Helper()
	prefix := opts.Prefix
	opts.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := rabbitmq.Connect(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, q := range []string{".events", ".default", ".default-reduce", ".default.dead", ".default-reduce.dead"} {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(prefix+q, false, false, false)
				_ = ch.Close()
			}
		}
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(prefix+".events", false, false)
			_ = ch.ExchangeDelete(prefix+".broadcast", false, false)
			_ = ch.ExchangeDelete(prefix+".rpc", false, false)
			_ = ch.ExchangeDelete(prefix+".requeue", false, false)
			_ = ch.Close()
		}
	})
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// quietAfter is a test log that drops what is written once the test has
// ended (a bus may log from a timer after it is closed).
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

func testLogger(t *testing.T) *slog.Logger {
	w := &quietAfter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A task held in a runtime's buffer (taken from the queue, waiting for a
// slot) longer than the lease keeps its lease: it is not redelivered, to
// this runtime or another, and runs once. One slot, tasks of several
// leases each, a prefetch deeper than the slots.
func TestBufferedTaskKeepsItsLease(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus.Bus) {
		// A lease of a second: renewals must not miss it on a loaded
		// machine; the last task still waits four leases.
		const tasks = 3
		lease := time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		job := "jbuf"
		events, err := b.Subscribe(ctx, wire.TaskEvents(job), bus.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		msgs := make([]bus.Message, tasks)
		for i := range msgs {
			data, _ := wire.Encode(wire.KindTask, wire.Task{Job: job, Index: i, Kind: wire.TaskMap, Attempt: 1, Function: "sleep",
				Args: []json.RawMessage{json.RawMessage(fmt.Sprint(2 * lease.Seconds()))}})
			msgs[i] = bus.Message{Data: data, Key: job}
		}
		// Runtime a opens the queue first, so that its prefetch takes every
		// task at once; runtime b, with a free slot, would run any task
		// the bus redelivered.
		start := func(name string, prefetch int) {
			rt, err := runtime.New(b, runtime.Config{Registry: fn.Builtins(), Slots: 1, Prefetch: prefetch, Lease: lease,
				StartedAfter: -1, WorkerID: name, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _, _ = rt.Run(rctx) }()
			t.Cleanup(func() { stop(); <-done })
		}
		start("a", tasks)
		if err := b.Enqueue(ctx, "default", msgs...); err != nil {
			t.Fatal(err)
		}
		startedB := false
		ran := map[int]int{}
		for len(ran) < tasks {
			var m bus.Message
			select {
			case m = <-events:
			case <-ctx.Done():
				t.Fatalf("tasks done: %v of %d", ran, tasks)
			}
			evs, err := coordinator.DecodeEvents(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Delivery != 1 {
					t.Fatalf("task %d was delivered again (delivery %d, %s at %s) while it waited in the runtime's buffer", ev.Task, ev.Delivery, ev.Type, ev.Worker)
				}
				if ev.Type == wire.EventDone {
					ran[ev.Task]++
				}
				if ev.Worker == "a" && !startedB {
					startedB = true
					start("b", 1)
				}
			}
		}
	})
}
