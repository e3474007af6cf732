package bustest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// queueWindow: a consumer never holds more unsettled deliveries than its
// window (another consumer gets the rest at once, not after a lease), and
// a window changed while the consumer runs applies: a larger one takes
// more, a smaller one takes no more than its size once the deliveries
// held before are settled.
func (s *suite) queueWindow(t *testing.T) {
	t.Parallel()
	ctx := s.ctx(t)
	a, other := s.newBus(t), s.newBus(t)
	lease := s.d(30 * time.Second) // nothing may come back by its lease here
	enqueue := func(q string, from, count int) {
		t.Helper()
		msgs := make([]bus.Message, count)
		for i := range msgs {
			msgs[i] = bus.Message{Data: []byte("task " + strconv.Itoa(from+i))}
		}
		settle(t, ctx, "enqueue", a.Enqueue(ctx, q, msgs...))
	}

	// Beyond the window: another consumer gets the rest at once. (On a
	// queue of its own: a consumer stopped here may leave a pull request
	// on the server until it expires — nats-server 2.9 keeps them — and
	// that would take the messages of the steps below.)
	q1 := s.name(t, "window")
	actx, stopA := context.WithCancel(ctx)
	dsA1, err := a.Consume(actx, q1, bus.QueueOptions{Window: bus.NewWindow(3), Lease: lease})
	settle(t, ctx, "consume", err)
	enqueue(q1, 0, 4)
	var held []bus.Delivery
	for range 3 {
		held = append(held, recv(t, dsA1, s.d(10*time.Second), "delivery within the window"))
	}
	bctx, stopB := context.WithCancel(ctx)
	dsB, err := other.Consume(bctx, q1, bus.QueueOptions{Prefetch: 1, Lease: lease})
	settle(t, ctx, "consume (other)", err)
	d := recv(t, dsB, s.d(10*time.Second), "the message beyond the first consumer's window, at the other")
	settle(t, ctx, "ack", d.Ack(ctx))
	for _, d := range held {
		settle(t, ctx, "ack", d.Ack(ctx))
	}
	stopB()
	stopA()
	for range dsB {
	}
	for range dsA1 {
	}

	// Larger: two more come while the three stay unsettled.
	q := s.name(t, "window")
	win := bus.NewWindow(3)
	dsA, err := a.Consume(ctx, q, bus.QueueOptions{Window: win, Lease: lease})
	settle(t, ctx, "consume", err)
	enqueue(q, 0, 3)
	held = held[:0]
	for range 3 {
		held = append(held, recv(t, dsA, s.d(10*time.Second), "delivery within the window"))
	}
	win.Set(5)
	enqueue(q, 3, 2)
	for range 2 {
		held = append(held, recv(t, dsA, s.d(10*time.Second), "delivery within the larger window"))
	}

	// Smaller: once what was held is settled, at most two at a time.
	win.Set(2)
	for _, d := range held {
		settle(t, ctx, "ack", d.Ack(ctx))
	}
	enqueue(q, 5, 4)
	dsC, err := other.Consume(ctx, q, bus.QueueOptions{Prefetch: 4, Lease: lease})
	settle(t, ctx, "consume (third)", err)
	toA := 0
	held = held[:0]
	defer func() {
		for _, d := range held {
			_ = d.Ack(ctx)
		}
	}()
	timeout := time.After(s.d(10 * time.Second))
	for got := 0; got < 4; got++ {
		select {
		case d := <-dsA:
			held = append(held, d)
			if toA++; toA > 2 {
				t.Fatalf("the first consumer holds %d unsettled deliveries, its window is 2", toA)
			}
		case d := <-dsC:
			held = append(held, d)
		case <-timeout:
			t.Fatalf("%d of 4 messages delivered (%d to the consumer of window 2)", got, toA)
		}
	}
}
