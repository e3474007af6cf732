package natsbus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
)

// TestPurgeManyMessages purges one key with many pending messages (one
// delete each) on both supported server versions: every message of that key goes, every message of the other key stays,
// and a purge of the key once it is empty (the coordinator's call at the
// end of every job) costs one round trip.
func TestPurgeManyMessages(t *testing.T) {
	count := 20000
	if testing.Short() {
		count = 2000
	}
	for name, bin := range natsServers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startNATSProcess(t, bin)
			ctx := ctxFor(t, 5*time.Minute)
			b := connect(t, srv.URL())
			p := b.(bus.Purger)
			const q, others = "pm", 100
			msgs := make([]bus.Message, 0, count+others+1)
			msgs = append(msgs, bus.Message{Key: "other", Data: []byte("first")})
			for i := range count {
				msgs = append(msgs, bus.Message{Key: "big", Data: []byte(strconv.Itoa(i))})
				if i%(count/others) == 0 {
					msgs = append(msgs, bus.Message{Key: "other", Data: []byte("o" + strconv.Itoa(i))})
				}
			}
			start := time.Now()
			if err := b.Enqueue(ctx, q, msgs...); err != nil {
				t.Fatal(err)
			}
			t.Logf("enqueue %d: %v", len(msgs), time.Since(start))
			// The queue's consumer exists and has delivered, as in a
			// running installation; nothing is pulled on its behalf
			// during the purge (a delivery pulled before may arrive
			// after a purge).
			first, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			for d := range first {
				if string(d.Message().Data) != "first" {
					t.Fatalf("first delivery %q, want \"first\"", d.Message().Data)
				}
				if err := d.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}
			start = time.Now()
			if err := p.Purge(ctx, q, "big"); err != nil {
				t.Fatal(err)
			}
			t.Logf("purge of %d messages: %v", count, time.Since(start))
			start = time.Now()
			if err := p.Purge(ctx, q, "big"); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("purge of an empty key took %v, want one round trip", d)
			} else {
				t.Logf("purge of an empty key: %v", d)
			}
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ds, err := b.Consume(cctx, q, bus.QueueOptions{Prefetch: 16})
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for got < others {
				select {
				case d := <-ds:
					if k := d.Message().Key; k != "other" {
						t.Fatalf("got a message of %q (%s) after purging it", k, d.Message().Data)
					}
					got++
					if err := d.Ack(ctx); err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%d of %d messages of the other key delivered", got, others)
				}
			}
			select {
			case d := <-ds:
				t.Fatalf("got %q of %q, want nothing more", d.Message().Data, d.Message().Key)
			case <-time.After(500 * time.Millisecond):
			}
		})
	}
}

// TestDeleteSettledTask deletes a task that a runtime acked between the
// purge finding it and deleting it (the work-queue stream removed it on
// the ack): the delete is no error on any supported server, and a purge
// that meets it goes on. The server answers such a delete with "no
// message found" (10057) or "sequence not found" (10043) depending on
// where the message was when the delete came; the coordinator logged it
// as a failed purge at the end of a job.
func TestDeleteSettledTask(t *testing.T) {
	servers := map[string]func(t *testing.T) string{
		"Embedded": func(t *testing.T) string {
			e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Shutdown)
			return e.ClientURL()
		},
	}
	for name, bin := range natsServers(t) {
		servers[name] = func(t *testing.T) string { return startNATSProcess(t, bin).URL() }
	}
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, time.Minute)
			b := connect(t, start(t))
			const q = "ds"
			if err := b.Enqueue(ctx, q, bus.Message{Key: "k", Data: []byte("one")}); err != nil {
				t.Fatal(err)
			}
			ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			for d := range ds {
				if err := d.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// The stream's first message (sequence 1) is gone with its ack.
			for i := range 2 {
				if err := b.(*natsbus.Bus).DeleteTask(ctx, 1); err != nil {
					t.Errorf("delete %d of an acked task: %v", i+1, err)
				}
			}
		})
	}
}
