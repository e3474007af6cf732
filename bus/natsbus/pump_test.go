package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
)

// countingHandler counts log records whose message contains a word, and
// passes every record on to the test log.
type countingHandler struct {
	slog.Handler
	word string
	mu   *sync.Mutex
	n    *int
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.word) {
		h.mu.Lock()
		*h.n++
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

// TestPullErrorBacksOff deletes the task stream under a running
// Consume, and puts a stream of another name on its subjects so that the
// bus cannot make it again (restore.go): from then on every pull and
// every attempt to open the queue's consumer again fails, until the other
// stream goes. The consumer retries with a growing wait (a handful of
// JetStream API calls in 3 s, not thousands), logs the streak once, and
// delivers on the same channel once the bus has made the stream again.
func TestPullErrorBacksOff(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		mu    sync.Mutex
		warns int
	)
	log := slog.New(countingHandler{Handler: slog.NewTextHandler(tlog{t}, nil), word: "pull", mu: &mu, n: &warns})
	b, err := e.Connect(ctx, natsbus.Options{Logger: log, MemoryStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ds, err := b.Consume(ctx, "backoff", bus.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	apiCalls := func() uint64 {
		jsz, err := e.Server().Jsz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return jsz.API.Total
	}
	// The bus may make its stream again between the two steps (its pull
	// failed at once): then the squatter finds the subjects taken, and
	// both steps are done again.
	for attempt := 0; ; attempt++ {
		if err := js.DeleteStream(ctx, "SKEIN_TASKS"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatal(err)
		}
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"skein.task.>"}, Storage: jetstream.MemoryStorage})
		if err == nil {
			break
		}
		if attempt == 20 {
			t.Fatal(err)
		}
	}
	// The streak usually begins at once. Once in about 25 runs no pull
	// had failed 3 s after the loop above, not yet explained: perhaps a
	// pull in flight to a stream the loop deleted again, found dead only
	// by its missed heartbeats. The window below starts at the first
	// warning; none within 20 s is a hang, and fails.
	warned := func() int {
		mu.Lock()
		defer mu.Unlock()
		return warns
	}
	for deadline := time.Now().Add(20 * time.Second); warned() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failing pull warned about within 20s of the stream's loss")
		}
	}
	before := apiCalls()
	// An observation window: how often the failing pull is retried and
	// logged.
	time.Sleep(3 * time.Second)
	calls := apiCalls() - before
	if n := warned(); n > 2 {
		t.Errorf("a pull failing for 3s was warned about %d times; want the streak warned about once", n)
	}
	if calls > 40 {
		t.Errorf("%d JetStream API calls in 3s of failing pulls; want a few, with backoff", calls)
	}
	t.Logf("3s of failing pulls: %d log lines, %d API calls", warned(), calls)

	// The other stream goes; the bus makes its own again, and the
	// consumer comes back by itself.
	if err := js.DeleteStream(ctx, "SQUATTER"); err != nil {
		t.Fatal(err)
	}
	for {
		err := b.Enqueue(ctx, "backoff", bus.Message{Data: []byte("after")})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("enqueue after the other stream went: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case d, ok := <-ds:
		if !ok {
			t.Fatalf("Consume's channel closed after a failing streak; want it to recover")
		}
		if string(d.Message().Data) != "after" {
			t.Fatalf("got %q", d.Message().Data)
		}
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no delivery within 15s of the stream's return")
	}
}

// TestConsumerDeletedUnderConsume deletes a queue's durable consumer
// (an operator's `nats consumer rm`, or the server's inactivity
// threshold) under a running Consume: the bus creates it again and keeps
// delivering on the same channel.
func TestConsumerDeletedUnderConsume(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := e.Connect(ctx, natsbus.Options{Logger: slog.New(slog.NewTextHandler(tlog{t}, nil)), MemoryStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, limit := range []int{0, 1} {
		q := "deleted" + strconv.Itoa(limit)
		ds, err := b.Consume(ctx, q, bus.QueueOptions{Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(b.Conn())
		if err != nil {
			t.Fatal(err)
		}
		if err := js.DeleteConsumer(ctx, "SKEIN_TASKS", "q-"+q); err != nil {
			t.Fatal(err)
		}
		if err := b.Enqueue(ctx, q, bus.Message{Data: []byte("after")}); err != nil {
			t.Fatal(err)
		}
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatalf("limit %d: Consume's channel closed when the consumer was deleted", limit)
			}
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("limit %d: no delivery within 15s after the consumer was deleted", limit)
		}
	}
}

// TestTaskStreamDeletedUnderConsume deletes the task and event streams
// under a running Consume whose reader holds a delivery (an operator's
// `nats stream rm`; the server stays up). The held delivery is gone with
// its stream: it reports itself revoked, and settling it fails at once
// rather than being tried again for as long as the settle's context lasts,
// which held the reader (a runtime's slot) and, through the window's room,
// every later delivery. Tasks enqueued after the bus made the stream
// again are delivered at once.
//
// Without the revocation the held delivery's ack reached the durable
// consumer of the stream made again (the same name) and succeeded: it
// acknowledged whatever that stream held at the old sequence, a task
// another runtime may be running.
//
// The streams are in memory: a file-stored stream deleted and made again
// at once by another client sometimes comes back holding the old one's
// last sequence and acknowledges no publication (nats-server, embedded,
// seen in about one run in thirty here), which is not this test's matter.
func TestTaskStreamDeletedUnderConsume(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	producer := natstest.Connect(t, srv, natsbus.Options{Logger: log, MemoryStorage: true})
	consumer := natstest.Connect(t, srv, natsbus.Options{Logger: log, MemoryStorage: true})
	ds, err := consumer.Consume(ctx, "work", bus.QueueOptions{Window: bus.NewWindow(4)})
	if err != nil {
		t.Fatal(err)
	}
	enqueue := func(tag string, n int) {
		msgs := make([]bus.Message, n)
		for i := range msgs {
			msgs[i] = bus.Message{Data: []byte(fmt.Sprint(tag, i)), Key: "j" + tag, ID: fmt.Sprint(tag, i)}
		}
		for {
			// The first tries may find no stream, until a bus makes it
			// again.
			err := producer.Enqueue(ctx, "work", msgs...)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	next := func(within time.Duration) bus.Delivery {
		t.Helper()
		select {
		case d := <-ds:
			return d
		case <-time.After(within):
			t.Fatalf("no delivery within %v", within)
			return nil
		}
	}
	enqueue("a", 1)
	held := next(5 * time.Second)
	js, err := jetstream.New(producer.Conn())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SKEIN_TASKS", "SKEIN_EVENTS"} {
		if err := js.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	enqueue("b", 10)
	// The bus has seen the stream made again once it delivers from it.
	first := next(5 * time.Second)
	if !bus.Revoked(held) {
		t.Errorf("a delivery of the deleted stream is not revoked")
	}
	if bus.Revoked(first) {
		t.Errorf("a delivery of the stream made again is revoked")
	}
	start := time.Now()
	if err := held.Ack(ctx); err == nil {
		t.Errorf("the ack of a delivery whose stream was deleted succeeded")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the ack of a delivery whose stream was deleted took %v; want it to fail at once", took)
	}
	if err := first.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 10; i++ {
		if err := next(5 * time.Second).Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
