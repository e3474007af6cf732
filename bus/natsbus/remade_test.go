package natsbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
)

// TestEventStreamMadeAgainByAnotherClient: the event stream is deleted
// while a bus stays connected and another client makes it again at once
// (an operator's `nats stream rm`, then any program that finds it
// missing). The bus must find out: it reports the loss (StoreLost),
// and its subscription reads the new stream from its start.
//
// Found by trying it (a CI run of pkg/coordinator TestRefollowTriesAgain):
// the subscription's ordered consumer, told by the server that its
// consumer was deleted, made itself again on the new stream by its own,
// resuming after its position on the old one. The bus never heard of it:
// no StoreLost, and the new stream's first records (the job log's jobs
// accepted since) were skipped while the subscription waited for the new
// stream to reach the old position.
//
// The streams are in memory: see TestTaskStreamDeletedUnderConsume.
func TestEventStreamMadeAgainByAnotherClient(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	reader := natstest.Connect(t, srv, natsbus.Options{Logger: log, MemoryStorage: true})
	other := natstest.Connect(t, srv, natsbus.Options{Logger: log, MemoryStorage: true})
	events, err := reader.Subscribe(ctx, "remade.>", bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(other.Conn())
	if err != nil {
		t.Fatal(err)
	}
	publish := func(tag string, n int) {
		t.Helper()
		for i := range n {
			// The first tries may find no stream, until the other bus
			// has made it again.
			for {
				err := other.Publish(ctx, "remade.x", bus.Message{Data: fmt.Appendf(nil, "%s %d", tag, i)})
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	expect := func(tag string, n int) {
		t.Helper()
		for i := range n {
			want := fmt.Sprintf("%s %d", tag, i)
			select {
			case m := <-events:
				if string(m.Data) != want {
					t.Fatalf("event %q, want %q", m.Data, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no event %q within 10s", want)
			}
		}
	}
	publish("before", 5)
	expect("before", 5)
	for round := range 3 {
		info, err := js.Stream(ctx, "SKEIN_EVENTS")
		if err != nil {
			t.Fatal(err)
		}
		if err := js.DeleteStream(ctx, "SKEIN_EVENTS"); err != nil {
			t.Fatal(err)
		}
		// Made again at once, as a client of another release or one
		// that found it missing first would.
		if _, err := js.CreateStream(ctx, info.CachedInfo().Config); err != nil {
			t.Fatal(err)
		}
		// Fewer records than the old stream had: at the old position the
		// reader would never see them.
		tag := fmt.Sprint("after ", round)
		publish(tag, 2)
		select {
		case <-reader.StoreLost():
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the reader's bus did not report the event stream made again within 10s", round)
		}
		expect(tag, 2)
	}
}
