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

// purgeHeldDeliveries purges one key while a consumer holds unsettled
// deliveries of that key and of another; another consumer then takes and
// acks the next message, and the first one goes away without settling
// anything (a runtime killed with tasks in its buffer). Every message of
// the other key must still come, the held ones once their lease has run
// out. (On nats-server 2.10.11 to at least 2.15.3 a subject-filtered
// purge that removes deliveries a wider consumer holds moves that
// consumer's ack floor past the deliveries held of other subjects at the
// next ack: they are never delivered again and, on a work queue, never
// removed.)
func (s *suite) purgeHeldDeliveries(t *testing.T) {
	if !s.f.Purge {
		t.Skip("the bus does not purge (Features.Purge unset)")
	}
	t.Parallel()
	dying, survivor, ctx, q := s.newBus(t), s.newBus(t), s.ctx(t), s.name(t, "purgeheld")
	p, ok := survivor.(bus.Purger)
	if !ok {
		t.Fatalf("Features.Purge is set but the bus does not implement bus.Purger")
	}
	lease := s.d(time.Second)
	// A0 B0 A1 B1 A2 B2 A3 B3, then A4..A9.
	const held, countA = 8, 10
	var msgs []bus.Message
	for i := range countA {
		msgs = append(msgs, bus.Message{Key: "jobA", Data: []byte("A" + strconv.Itoa(i))})
		if i < held/2 {
			msgs = append(msgs, bus.Message{Key: "jobB", Data: []byte("B" + strconv.Itoa(i))})
		}
	}
	settle(t, ctx, "enqueue", dying.Enqueue(ctx, q, msgs...))
	dctx, stopDying := context.WithCancel(ctx)
	defer stopDying()
	dds, err := dying.Consume(dctx, q, bus.QueueOptions{Prefetch: held, Lease: lease})
	settle(t, ctx, "consume", err)
	for i := range held {
		d := recv(t, dds, s.d(10*time.Second), "delivery "+strconv.Itoa(i)+" to the consumer that will die")
		if k, want := string(d.Message().Data), string(msgs[i].Data); k != want {
			t.Fatalf("delivery %d is %s, want %s", i, k, want)
		}
	}
	settle(t, ctx, "purge jobB", p.Purge(ctx, q, "jobB"))
	sds, err := survivor.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, Lease: lease})
	settle(t, ctx, "consume (survivor)", err)
	d := recv(t, sds, s.d(10*time.Second), "the survivor's first delivery")
	if k := string(d.Message().Data); k != "A4" {
		t.Fatalf("the survivor's first delivery is %s, want A4", k)
	}
	settle(t, ctx, "ack A4", d.Ack(ctx))
	// The dying consumer goes without settling A0..A3.
	stopDying()
	_ = dying.Close()
	got := map[string]int{"A4": 1}
	for len(got) < countA {
		select {
		case d := <-sds:
			m := d.Message()
			if m.Key != "jobA" {
				t.Errorf("got %s of %s after purging jobB", m.Data, m.Key)
			}
			got[string(m.Data)]++
			settle(t, ctx, "ack", d.Ack(ctx))
		case <-time.After(lease + s.d(10*time.Second)):
			var missing []string
			for i := range countA {
				if k := "A" + strconv.Itoa(i); got[k] == 0 {
					missing = append(missing, k)
				}
			}
			t.Fatalf("%v of jobA never delivered to the survivor (%d of %d were): the purge stranded them", missing, len(got), countA)
		}
	}
	none(t, sds, lease+lease/2, "after every message of jobA")
}
