package bustest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
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

// queueWindowResize: a window changed while deliveries stream in costs
// no message a delivery. It grows while the consumer acks as it goes (a
// flood of short tasks), and shrinks while the consumer holds its whole
// window (tasks got longer and wait); each message is delivered once,
// with Attempt 1, the consumer never holds more than its window once what
// it held before is settled, and nothing comes back after it is acked. A
// bus that replaces its consumer to apply a new size (RabbitMQ) must not
// hand back what was on its way to the old one.
func (s *suite) queueWindowResize(t *testing.T) {
	t.Parallel()
	ctx := s.ctx(t)
	a := s.newBus(t)
	q := s.name(t, "resize")
	const total = 300
	msgs := make([]bus.Message, total)
	for i := range msgs {
		msgs[i] = bus.Message{Data: []byte(strconv.Itoa(i))}
	}
	settle(t, ctx, "enqueue", a.Enqueue(ctx, q, msgs...))
	win := bus.NewWindow(2)
	cctx, stop := context.WithCancel(ctx)
	ds, err := a.Consume(cctx, q, bus.QueueOptions{Window: win, Lease: s.d(30 * time.Second)})
	settle(t, ctx, "consume", err)
	seen := make(map[string]bool, total)
	got := 0
	take := func(what string) bus.Delivery {
		t.Helper()
		d := recv(t, ds, s.d(10*time.Second), what)
		got++
		body := string(d.Message().Data)
		if seen[body] || d.Attempt() != 1 {
			t.Fatalf("message %s delivered again (attempt %d) across window changes (%s)", body, d.Attempt(), what)
		}
		seen[body] = true
		return d
	}
	ackAll := func(held []bus.Delivery) {
		t.Helper()
		for _, h := range held {
			settle(t, ctx, "ack", h.Ack(ctx))
		}
	}

	// Growing while the deliveries are acked as they come.
	for _, size := range []int{3, 5, 8, 13, 21, 34} {
		win.Set(size)
		var held []bus.Delivery
		for range 20 {
			held = append(held, take("a delivery while the window grows"))
			if len(held) > 1 {
				ackAll(held[:len(held)-1])
				held = held[len(held)-1:]
			}
		}
		ackAll(held)
	}
	// Shrinking while the consumer holds what its window lets it take (a
	// bus may ask for more only once a part of the window is free).
	size := 34
	for _, smaller := range []int{20, 9, 4, 2} {
		held := []bus.Delivery{take("a delivery up to the window")}
	fill:
		for {
			select {
			case d := <-ds:
				got++
				body := string(d.Message().Data)
				if seen[body] || d.Attempt() != 1 {
					t.Fatalf("message %s delivered again (attempt %d) while the window was %d", body, d.Attempt(), size)
				}
				seen[body] = true
				if held = append(held, d); len(held) > size {
					t.Fatalf("the consumer holds %d unsettled deliveries, its window is %d", len(held), size)
				}
			case <-time.After(s.d(300 * time.Millisecond)):
				break fill
			}
		}
		win.Set(smaller)
		ackAll(held)
		size = smaller
	}
	for got < total {
		ackAll([]bus.Delivery{take("the rest")})
	}
	// Nothing comes back: every message was acked once.
	select {
	case d, ok := <-ds:
		if ok {
			t.Fatalf("message %s delivered again (attempt %d) after every message was acked", d.Message().Data, d.Attempt())
		}
	case <-time.After(s.d(2 * time.Second)):
	}
	stop()
	for range ds {
	}
	b := s.newBus(t)
	ds2, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 8, Lease: s.d(30 * time.Second)})
	settle(t, ctx, "consume (after)", err)
	select {
	case d := <-ds2:
		t.Fatalf("message %s still on the queue (attempt %d) after it was acked", d.Message().Data, d.Attempt())
	case <-time.After(s.d(2 * time.Second)):
	}
}

// queueWindowChurn: a window that changes every few hundred milliseconds
// while a flood streams in and every delivery is acked as it comes (a
// runtime's pacer on a busy machine) costs no message a delivery, for
// longer than a bus may wait before it retires what a smaller window
// leaves over. A bus that applies a smaller window by cancelling a
// consumer must not let a message so handed back be handed back again by
// the next consumer it cancels (at most Attempt 2 with ShrinkHandsBack,
// 1 otherwise): on RabbitMQ that used up a task's deliveries within
// seconds ("delivered 5 times without finishing") with no runtime
// failing.
func (s *suite) queueWindowChurn(t *testing.T) {
	t.Parallel()
	ctx := s.ctx(t)
	a, pub := s.newBus(t), s.newBus(t)
	q := s.name(t, "churn")
	// The publisher keeps the queue from running dry, a few thousand
	// messages ahead of the consumer.
	var acked atomic.Int64
	pctx, stopPub := context.WithCancel(ctx)
	published := make(chan int, 1)
	go func() {
		n := 0
		defer func() { published <- n }()
		for pctx.Err() == nil {
			if int64(n)-acked.Load() > 3000 {
				time.Sleep(time.Millisecond)
				continue
			}
			msgs := make([]bus.Message, 200)
			for i := range msgs {
				msgs[i] = bus.Message{Data: []byte(strconv.Itoa(n + i))}
			}
			if err := pub.Enqueue(pctx, q, msgs...); err != nil {
				return
			}
			n += len(msgs)
		}
	}()
	win := bus.NewWindow(4)
	cctx, stop := context.WithCancel(ctx)
	ds, err := a.Consume(cctx, q, bus.QueueOptions{Window: win, Lease: s.d(30 * time.Second)})
	settle(t, ctx, "consume", err)
	sizes := []int{16, 3, 64, 8, 200, 2, 100, 5, 32}
	change := time.NewTicker(200 * time.Millisecond)
	defer change.Stop()
	end := time.After(7 * time.Second)
	seen := make(map[string]bool)
	got, k, handedBack := 0, 0, 0
	maxAttempt := 1
	if s.f.ShrinkHandsBack {
		maxAttempt = 2
	}
	check := func(d bus.Delivery) {
		t.Helper()
		got++
		body := string(d.Message().Data)
		if seen[body] || d.Attempt() > maxAttempt {
			t.Fatalf("message %s delivered again (attempt %d) after %d deliveries while the window changed", body, d.Attempt(), got)
		}
		if d.Attempt() > 1 {
			handedBack++
		}
		seen[body] = true
		settle(t, ctx, "ack", d.Ack(ctx))
		acked.Add(1)
	}
loop:
	for {
		select {
		case d := <-ds:
			check(d)
		case <-change.C:
			win.Set(sizes[k%len(sizes)])
			k++
		case <-end:
			break loop
		}
	}
	stopPub()
	n := <-published
	// The rest of what was published, once each.
	for got < n {
		check(recv(t, ds, s.d(10*time.Second), fmt.Sprintf("the rest (%d of %d)", got, n)))
	}
	stop()
	for range ds {
	}
	t.Logf("%d messages, %d window changes, %d handed back once on the way", got, k, handedBack)
}
