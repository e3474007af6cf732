package bustest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// purgeKeepsOtherKeys purges one key of a queue while a consumer of that
// queue holds unsettled deliveries of another key and more of that key
// are pending: every message of the other key must still be delivered,
// and none of the purged key. (nats-server before 2.9.12 moved the
// queue's consumer past every pending message on such a purge.) A purge
// of a key with nothing left, or never used, succeeds and changes
// nothing.
func (s *suite) purgeKeepsOtherKeys(t *testing.T) {
	if !s.f.Purge {
		t.Skip("the bus does not purge (Features.Purge unset)")
	}
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "purgekeep")
	p, ok := b.(bus.Purger)
	if !ok {
		t.Fatalf("Features.Purge is set but the bus does not implement bus.Purger")
	}
	countA := n(40, 20)
	// A first, so that the first deliveries are A's; then B's and A's
	// mixed, so that B's messages lie between pending A's.
	var msgs []bus.Message
	for i := range countA {
		msgs = append(msgs, bus.Message{Key: "jobA", Data: []byte("A" + strconv.Itoa(i))})
		if i >= 4 && i%2 == 0 {
			msgs = append(msgs, bus.Message{Key: "jobB", Data: []byte("B" + strconv.Itoa(i))})
		}
	}
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, msgs...))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ds, err := b.Consume(cctx, q, bus.QueueOptions{Prefetch: 2})
	settle(t, ctx, "consume", err)
	got := map[string]int{}
	var held []bus.Delivery
	for range 2 {
		d := recv(t, ds, s.d(10*time.Second), "delivery before the purge")
		got[string(d.Message().Data)]++
		held = append(held, d)
	}
	settle(t, ctx, "purge jobB", p.Purge(ctx, q, "jobB"))
	settle(t, ctx, "purge jobB again (nothing left)", p.Purge(ctx, q, "jobB"))
	settle(t, ctx, "purge a key never used", p.Purge(ctx, q, "jobC"))
	for _, d := range held {
		settle(t, ctx, "ack a delivery held across the purge", d.Ack(ctx))
	}
	for len(got) < countA {
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatalf("deliveries closed")
			}
			m := d.Message()
			if m.Key != "jobA" {
				t.Errorf("got %q of %q after purging jobB", m.Data, m.Key)
			}
			got[string(m.Data)]++
			settle(t, ctx, "ack", d.Ack(ctx))
		case <-time.After(s.d(10 * time.Second)):
			t.Fatalf("%d of %d messages of jobA delivered after purging jobB: the purge stranded the rest", len(got), countA)
		}
	}
	for k, c := range got {
		if c != 1 {
			t.Errorf("%s delivered %d times, want once", k, c)
		}
	}
	none(t, ds, s.d(500*time.Millisecond), "after every message of jobA")
}
