package natsbus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// TestSettleConfirmed holds Ack, Nak, Term and InProgress to the
// bus.Delivery contract: each returns once the broker confirmed it, so
// with the server frozen (SIGSTOP: the connection stays up, nothing
// answers) each fails when its ctx ends and leaves the delivery
// unsettled; a done ctx fails at once; and once Ack returned, the
// consumer no longer counts the message as pending.
func TestSettleConfirmed(t *testing.T) {
	for name, bin := range natsServers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startNATSProcess(t, bin)
			ctx := ctxFor(t, time.Minute)
			b := connect(t, srv.URL())
			const q = "settle"
			var msgs []bus.Message
			for i := range 5 {
				msgs = append(msgs, bus.Message{Data: []byte(strconv.Itoa(i))})
			}
			if err := b.Enqueue(ctx, q, msgs...); err != nil {
				t.Fatal(err)
			}
			ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 5, Lease: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var got []bus.Delivery
			for range 5 {
				select {
				case d := <-ds:
					got = append(got, d)
				case <-time.After(10 * time.Second):
					t.Fatalf("%d of 5 deliveries", len(got))
				}
			}
			settles := map[string]func(context.Context, bus.Delivery) error{
				"Ack":        func(ctx context.Context, d bus.Delivery) error { return d.Ack(ctx) },
				"Nak":        func(ctx context.Context, d bus.Delivery) error { return d.Nak(ctx, time.Second) },
				"Term":       func(ctx context.Context, d bus.Delivery) error { return d.Term(ctx, "poison") },
				"InProgress": func(ctx context.Context, d bus.Delivery) error { return d.InProgress(ctx) },
			}
			order := []string{"Ack", "Nak", "Term", "InProgress"}

			done, cancel := context.WithCancel(ctx)
			cancel()
			for i, name := range order {
				if err := settles[name](done, got[i]); err == nil {
					t.Errorf("%s with a done ctx returned nil, want the ctx's error", name)
				}
			}

			srv.Freeze()
			for i, name := range order {
				sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
				err := settles[name](sctx, got[i])
				scancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s with the server frozen: %v, want context.DeadlineExceeded (nothing confirmed it)", name, err)
				}
			}
			srv.Thaw()

			// Unsettled still: each can be settled now, and confirmed.
			for i, name := range order {
				if err := settles[name](ctx, got[i]); err != nil {
					t.Errorf("%s after the server is back: %v", name, err)
				}
			}
			if err := got[3].Ack(ctx); err != nil {
				t.Errorf("Ack after InProgress: %v", err)
			}
			if err := got[4].Ack(ctx); err != nil {
				t.Fatal(err)
			}
			ci, err := inspector(t, b).consumer(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			// Acked: 0, 3, 4; terminated: 2; nak'ed: 1 (back after 1s).
			if ci.NumAckPending+int(ci.NumPending) > 1 {
				t.Errorf("right after the settles returned: %d ack pending, %d pending; want at most the nak'ed one", ci.NumAckPending, ci.NumPending)
			}
		})
	}
}
