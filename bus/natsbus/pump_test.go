package natsbus_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
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
	before := apiCalls()
	// An observation window: how often the failing pull is retried and
	// logged.
	time.Sleep(3 * time.Second)
	calls := apiCalls() - before
	mu.Lock()
	n := warns
	mu.Unlock()
	if n > 2 || n == 0 {
		t.Errorf("a pull failing for 3s was warned about %d times; want the streak warned about once", n)
	}
	if calls > 40 {
		t.Errorf("%d JetStream API calls in 3s of failing pulls; want a few, with backoff", calls)
	}
	t.Logf("3s of failing pulls: %d log lines, %d API calls", n, calls)

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
