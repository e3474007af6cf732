package bustest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// DeadLetter is a message found in a queue's dead-letter store.
type DeadLetter struct {
	Data   []byte
	Reason string
}

// Features declare what a bus supports beyond the bus.Bus contract. The
// zero value runs the core tests only.
type Features struct {
	// StopBroker and StartBroker stop the broker and start it again on
	// the same address with the same data. When both are set, the suite
	// restarts the broker in the middle of publishes and consumes, after
	// every other subtest has finished.
	StopBroker, StartBroker func() error
	// DeadLetters lists the dead letters of queue (without removing
	// them). When set, Term and MaxAttempts tests check the dead-letter
	// store and the reason.
	DeadLetters func(ctx context.Context, b bus.Bus, queue string) ([]DeadLetter, error)
	// Purge: the bus implements bus.Purger.
	Purge bool
	// StreamPrefix is put before every stream subject the suite uses, for
	// buses that store only subjects under a prefix (e.g. "events.").
	StreamPrefix string
	// Slow scales every wait (1 when zero), for slow brokers or machines.
	Slow float64
	// ShrinkHandsBack: a window that shrinks may hand back a message on
	// its way to the consumer, counted as delivered once more (RabbitMQ:
	// a consumer with room left that is cancelled; bus/rabbitmq). Such a
	// message may come with Attempt 2, never more, and never twice.
	ShrinkHandsBack bool
}

// Run runs the conformance suite. newBus returns a fresh connection to
// the same broker each time it is called and closes it in t.Cleanup; the
// suite may also close it earlier (to simulate a consumer that dies).
// Subtests use their own queue and subject names and run in parallel;
// -short scales the load down.
func Run(t *testing.T, f Features, newBus func(t *testing.T) bus.Bus) {
	if f.Slow <= 0 {
		f.Slow = 1
	}
	s := &suite{f: f, newBus: newBus, run: randHex(4)}
	t.Run("Core", func(t *testing.T) {
		t.Run("QueueEnqueueConsume", s.queueEnqueueConsume)
		t.Run("QueueCompetingConsumers", s.queueCompeting)
		t.Run("QueueAckNakTerm", s.queueAckNakTerm)
		t.Run("QueueAckAll", s.queueAckAll)
		t.Run("QueueNakDelay", s.queueNakDelay)
		t.Run("QueueInProgress", s.queueInProgress)
		t.Run("QueueLeaseExpiry", s.queueLeaseExpiry)
		t.Run("QueueConsumerDies", s.queueConsumerDies)
		t.Run("QueueMaxAttempts", s.queueMaxAttempts)
		t.Run("QueueMaxAttemptsNotTerminated", s.queueMaxAttemptsNotTerminated)
		t.Run("QueueConsumeStops", s.queueConsumeStops)
		t.Run("QueueWindow", s.queueWindow)
		t.Run("QueueWindowResize", s.queueWindowResize)
		t.Run("QueueWindowChurn", s.queueWindowChurn)
		t.Run("StreamWildcards", s.streamWildcards)
		t.Run("StreamOrdering", s.streamOrdering)
		t.Run("StreamReplaySince", s.streamReplaySince)
		t.Run("StreamPositions", s.streamPositions)
		t.Run("StreamPositionsConcurrent", s.streamPositionsConcurrent)
		t.Run("StreamReadToMark", s.streamReadToMark)
		t.Run("StreamReadTo", s.streamReadTo)
		t.Run("StreamManySubscribers", s.streamManySubscribers)
		t.Run("Broadcast", s.broadcast)
		t.Run("RequestReply", s.requestReply)
		t.Run("RequestLoadShared", s.requestLoadShared)
		t.Run("RequestConcurrent", s.requestConcurrent)
		t.Run("LargeMessages", s.largeMessages)
		t.Run("Purge", s.purge)
		t.Run("PurgeKeepsOtherKeys", s.purgeKeepsOtherKeys)
		t.Run("PurgeHeldDeliveries", s.purgeHeldDeliveries)
		t.Run("Closed", s.closed)
	})
	t.Run("BrokerRestart", s.brokerRestart)
}

type suite struct {
	f      Features
	newBus func(t *testing.T) bus.Bus
	run    string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// name is a queue name unique to this run and test: one token of
// letters, digits and '-', which every bus accepts.
func (s *suite) name(t *testing.T, what string) string {
	return "bustest-" + s.run + "-" + what + "-" + randHex(3)
}

// subject is a dotted subject root unique to this run and test.
func (s *suite) subject(t *testing.T, what string) string {
	return s.f.StreamPrefix + "bustest." + s.run + "." + what + "." + randHex(3)
}

func (s *suite) d(base time.Duration) time.Duration {
	return time.Duration(float64(base) * s.f.Slow)
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.d(60*time.Second))
	t.Cleanup(cancel)
	return ctx
}

func n(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

// recv waits for one value or fails the test.
func recv[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return v
	case <-time.After(timeout):
		t.Fatalf("%s: nothing within %s", what, timeout)
	}
	var zero T
	return zero
}

// none asserts that nothing arrives on ch for d.
func none[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v, ok := <-ch:
		if ok {
			t.Fatalf("%s: got %+v, want nothing for %s", what, v, d)
		}
		t.Fatalf("%s: channel closed, want it open", what)
	case <-time.After(d):
	}
}

func settle(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (s *suite) queueEnqueueConsume(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "q")
	count := n(100, 20)
	msgs := make([]bus.Message, count)
	for i := range msgs {
		msgs[i] = bus.Message{
			Key:    "job-" + strconv.Itoa(i%3),
			Header: map[string]string{"traceparent": "00-" + strconv.Itoa(i)},
			Data:   []byte("task " + strconv.Itoa(i)),
		}
	}
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, msgs...))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ds, err := b.Consume(cctx, q, bus.QueueOptions{Prefetch: 8})
	settle(t, ctx, "consume", err)
	seen := map[string]bool{}
	for range count {
		d := recv(t, ds, s.d(10*time.Second), "delivery")
		m := d.Message()
		i, err := strconv.Atoi(string(bytes.TrimPrefix(m.Data, []byte("task "))))
		if err != nil || i < 0 || i >= count {
			t.Fatalf("unexpected data %q", m.Data)
		}
		if seen[string(m.Data)] {
			t.Fatalf("%q delivered twice", m.Data)
		}
		seen[string(m.Data)] = true
		if m.Subject != q {
			t.Errorf("Subject = %q, want the queue %q", m.Subject, q)
		}
		if want := "job-" + strconv.Itoa(i%3); m.Key != want {
			t.Errorf("Key = %q, want %q", m.Key, want)
		}
		if got, want := m.Header["traceparent"], "00-"+strconv.Itoa(i); got != want {
			t.Errorf("Header[traceparent] = %q, want %q", got, want)
		}
		if d.Attempt() != 1 {
			t.Errorf("Attempt() = %d on a first delivery, want 1", d.Attempt())
		}
		settle(t, ctx, "ack", d.Ack(ctx))
	}
	// All acked: a new consumer finds nothing.
	cancel()
	for range ds {
	}
	ds2, err := b.Consume(ctx, q, bus.QueueOptions{})
	settle(t, ctx, "consume again", err)
	none(t, ds2, s.d(700*time.Millisecond), "acked queue")
}

func (s *suite) queueCompeting(t *testing.T) {
	t.Parallel()
	ctx, q := s.ctx(t), s.name(t, "compete")
	buses := []bus.Bus{s.newBus(t), s.newBus(t), s.newBus(t)}
	count := n(300, 60)
	var mu sync.Mutex
	got := map[string]int{}
	per := make([]int, len(buses))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	done := make(chan struct{})
	var total int
	for i, b := range buses {
		ds, err := b.Consume(cctx, q, bus.QueueOptions{Prefetch: 2})
		settle(t, ctx, "consume", err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range ds {
				time.Sleep(time.Millisecond) // let the others take some
				if err := d.Ack(ctx); err != nil {
					t.Errorf("ack: %v", err)
				}
				mu.Lock()
				got[string(d.Message().Data)]++
				per[i]++
				total++
				if total == count {
					close(done)
				}
				mu.Unlock()
			}
		}()
	}
	msgs := make([]bus.Message, count)
	for i := range msgs {
		msgs[i] = bus.Message{Data: []byte(strconv.Itoa(i))}
	}
	settle(t, ctx, "enqueue", s.newBus(t).Enqueue(ctx, q, msgs...))
	select {
	case <-done:
	case <-time.After(s.d(30 * time.Second)):
		mu.Lock()
		t.Fatalf("%d of %d messages consumed", total, count)
	}
	// Give a duplicate the chance to show up.
	time.Sleep(s.d(300 * time.Millisecond))
	cancel()
	wg.Wait()
	for i := range count {
		if c := got[strconv.Itoa(i)]; c != 1 {
			t.Errorf("message %d consumed %d times, want exactly once", i, c)
		}
	}
	busy := 0
	for _, c := range per {
		if c > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Errorf("consumers got %v messages: want the load spread over at least two", per)
	}
}

// queueAckAll: a bus that acks in batches (bus.BatchAcker) acks every
// delivery of the batch, once: none comes back after its lease, and each
// is settled (ErrSettled on a second ack, alone or in a batch).
func (s *suite) queueAckAll(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "ackall")
	ba, ok := b.(bus.BatchAcker)
	if !ok {
		t.Skip("the bus does not ack in batches (bus.BatchAcker)")
	}
	const count = 50
	msgs := make([]bus.Message, count)
	for i := range msgs {
		msgs[i] = bus.Message{Data: []byte(strconv.Itoa(i))}
	}
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, msgs...))
	lease := s.d(time.Second)
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: count, Lease: lease})
	settle(t, ctx, "consume", err)
	got := make([]bus.Delivery, 0, count)
	seen := map[string]bool{}
	for len(got) < count {
		d := recv(t, ds, s.d(10*time.Second), "delivery")
		if seen[string(d.Message().Data)] {
			t.Fatalf("message %s delivered twice before any ack", d.Message().Data)
		}
		seen[string(d.Message().Data)] = true
		got = append(got, d)
	}
	for i, err := range ba.AckAll(ctx, got) {
		if err != nil {
			t.Errorf("AckAll: delivery %d: %v", i, err)
		}
	}
	if err := got[0].Ack(ctx); !errors.Is(err, bus.ErrSettled) {
		t.Errorf("ack after AckAll: %v, want ErrSettled", err)
	}
	for i, err := range ba.AckAll(ctx, got[:2]) {
		if !errors.Is(err, bus.ErrSettled) {
			t.Errorf("AckAll again: delivery %d: %v, want ErrSettled", i, err)
		}
	}
	// Past three leases nothing comes back.
	none(t, ds, 3*lease, "queue after AckAll")
}

func (s *suite) queueAckNakTerm(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "settle")
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, bus.Message{Data: []byte("nak me")}, bus.Message{Data: []byte("term me")}))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 2})
	settle(t, ctx, "consume", err)

	d := recv(t, ds, s.d(10*time.Second), "first delivery")
	if string(d.Message().Data) != "nak me" || d.Attempt() != 1 {
		t.Fatalf("got %q attempt %d, want \"nak me\" attempt 1", d.Message().Data, d.Attempt())
	}
	settle(t, ctx, "nak", d.Nak(ctx, 0))
	for _, op := range []func() error{
		func() error { return d.Ack(ctx) },
		func() error { return d.Nak(ctx, 0) },
		func() error { return d.Term(ctx, "again") },
	} {
		if err := op(); !errors.Is(err, bus.ErrSettled) {
			t.Errorf("settling a nak'ed delivery again: %v, want ErrSettled", err)
		}
	}
	// The nak'ed message comes back (before or after the other one).
	var again, term bus.Delivery
	for range 2 {
		d := recv(t, ds, s.d(10*time.Second), "delivery after nak")
		switch string(d.Message().Data) {
		case "nak me":
			again = d
		case "term me":
			term = d
			if d.Attempt() != 1 {
				t.Errorf("untouched message: Attempt() = %d, want 1", d.Attempt())
			}
			settle(t, ctx, "term", d.Term(ctx, "poison: cannot decode"))
			if err := d.Ack(ctx); !errors.Is(err, bus.ErrSettled) {
				t.Errorf("ack after term: %v, want ErrSettled", err)
			}
		default:
			t.Fatalf("unexpected %q", d.Message().Data)
		}
	}
	if again == nil || term == nil {
		t.Fatalf("want both messages once more")
	}
	if again.Attempt() != 2 {
		t.Errorf("after nak: Attempt() = %d, want 2", again.Attempt())
	}
	settle(t, ctx, "ack", again.Ack(ctx))
	if err := again.Ack(ctx); !errors.Is(err, bus.ErrSettled) {
		t.Errorf("second ack: %v, want ErrSettled", err)
	}
	// Acked and terminated: nothing comes back.
	none(t, ds, s.d(1500*time.Millisecond), "queue after ack and term")
	if s.f.DeadLetters != nil {
		dl, err := s.f.DeadLetters(ctx, b, q)
		settle(t, ctx, "dead letters", err)
		if len(dl) != 1 || string(dl[0].Data) != "term me" || dl[0].Reason != "poison: cannot decode" {
			t.Errorf("dead letters = %+v, want one \"term me\" with reason \"poison: cannot decode\"", dl)
		}
	}
}

func (s *suite) queueNakDelay(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "delay")
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, bus.Message{Data: []byte("later"), Header: map[string]string{"h": "v"}}))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1})
	settle(t, ctx, "consume", err)
	d := recv(t, ds, s.d(10*time.Second), "delivery")
	const delay = 1500 * time.Millisecond
	start := time.Now()
	settle(t, ctx, "nak with delay", d.Nak(ctx, delay))
	none(t, ds, delay*2/3, "during the nak delay")
	d2 := recv(t, ds, s.d(15*time.Second), "delivery after the delay")
	if el := time.Since(start); el < delay*8/10 {
		t.Errorf("redelivered after %s, want about %s", el, delay)
	}
	if string(d2.Message().Data) != "later" || d2.Message().Header["h"] != "v" {
		t.Errorf("redelivered %q header %v, want the same message", d2.Message().Data, d2.Message().Header)
	}
	if d2.Attempt() != 2 {
		t.Errorf("Attempt() = %d after a delayed nak, want 2", d2.Attempt())
	}
	settle(t, ctx, "ack", d2.Ack(ctx))
	none(t, ds, s.d(700*time.Millisecond), "after ack")
}

func (s *suite) queueInProgress(t *testing.T) {
	t.Parallel()
	ctx, q := s.ctx(t), s.name(t, "inprogress")
	a, other := s.newBus(t), s.newBus(t)
	lease := s.d(time.Second)
	settle(t, ctx, "enqueue", a.Enqueue(ctx, q, bus.Message{Data: []byte("long task")}))
	dsA, err := a.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, Lease: lease})
	settle(t, ctx, "consume", err)
	d := recv(t, dsA, s.d(10*time.Second), "delivery")
	dsB, err := other.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, Lease: lease})
	settle(t, ctx, "consume (other)", err)
	// Hold it for three leases, heartbeating.
	end := time.Now().Add(3 * lease)
	for time.Now().Before(end) {
		settle(t, ctx, "in progress", d.InProgress(ctx))
		select {
		case d2 := <-dsB:
			t.Fatalf("redelivered to another consumer (attempt %d) while in progress", d2.Attempt())
		case d2 := <-dsA:
			t.Fatalf("redelivered (attempt %d) while in progress", d2.Attempt())
		case <-time.After(lease / 4):
		}
	}
	settle(t, ctx, "ack after three leases", d.Ack(ctx))
	none(t, dsB, lease+lease/2, "other consumer after ack")
}

func (s *suite) queueLeaseExpiry(t *testing.T) {
	t.Parallel()
	ctx, q := s.ctx(t), s.name(t, "lease")
	b := s.newBus(t)
	lease := s.d(time.Second)
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, bus.Message{Data: []byte("hung")}))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 2, Lease: lease})
	settle(t, ctx, "consume", err)
	d := recv(t, ds, s.d(10*time.Second), "delivery")
	start := time.Now()
	// Not settled, no heartbeat: it comes again after the lease.
	d2 := recv(t, ds, lease+s.d(10*time.Second), "redelivery after the lease")
	if el := time.Since(start); el < lease*8/10 {
		t.Errorf("redelivered after %s, before the lease of %s", el, lease)
	}
	if string(d2.Message().Data) != "hung" || d2.Attempt() != 2 {
		t.Errorf("got %q attempt %d, want \"hung\" attempt 2", d2.Message().Data, d2.Attempt())
	}
	settle(t, ctx, "ack", d2.Ack(ctx))
	_ = d.Ack(ctx) // too late: either an error or a no-op, never a redelivery
	none(t, ds, lease+lease/2, "after ack")
}

func (s *suite) queueConsumerDies(t *testing.T) {
	t.Parallel()
	ctx, q := s.ctx(t), s.name(t, "dies")
	dying, survivor := s.newBus(t), s.newBus(t)
	opts := bus.QueueOptions{Prefetch: 1, Lease: s.d(time.Second)}
	settle(t, ctx, "enqueue", survivor.Enqueue(ctx, q, bus.Message{Data: []byte("orphan")}))
	ds, err := dying.Consume(ctx, q, opts)
	settle(t, ctx, "consume", err)
	d := recv(t, ds, s.d(10*time.Second), "delivery")
	if d.Attempt() != 1 {
		t.Fatalf("Attempt() = %d, want 1", d.Attempt())
	}
	if err := dying.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The closed bus' channel is closed.
	select {
	case _, ok := <-ds:
		if ok {
			t.Fatalf("delivery after Close")
		}
	case <-time.After(s.d(5 * time.Second)):
		t.Fatalf("Consume channel not closed by Close")
	}
	ds2, err := survivor.Consume(ctx, q, opts)
	settle(t, ctx, "consume (survivor)", err)
	d2 := recv(t, ds2, s.d(15*time.Second), "redelivery to the survivor")
	if string(d2.Message().Data) != "orphan" || d2.Attempt() != 2 {
		t.Errorf("got %q attempt %d, want \"orphan\" attempt 2", d2.Message().Data, d2.Attempt())
	}
	settle(t, ctx, "ack", d2.Ack(ctx))
}

func (s *suite) queueMaxAttempts(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "maxatt")
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, bus.Message{Data: []byte("poison")}))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, MaxAttempts: 2})
	settle(t, ctx, "consume", err)
	var attempts []int
	for {
		d := recv(t, ds, s.d(10*time.Second), "delivery")
		attempts = append(attempts, d.Attempt())
		if d.Attempt() > 2 {
			settle(t, ctx, "term", d.Term(ctx, fmt.Sprintf("failed %d times", d.Attempt())))
			break
		}
		settle(t, ctx, "nak", d.Nak(ctx, 0))
		if len(attempts) > 5 {
			t.Fatalf("attempts %v: never saw Attempt() > MaxAttempts", attempts)
		}
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("attempts = %v, want [1 2 3] with MaxAttempts 2", attempts)
	}
	none(t, ds, s.d(time.Second), "after term")
	if s.f.DeadLetters != nil {
		dl, err := s.f.DeadLetters(ctx, b, q)
		settle(t, ctx, "dead letters", err)
		if len(dl) != 1 || string(dl[0].Data) != "poison" || dl[0].Reason != "failed 3 times" {
			t.Errorf("dead letters = %+v, want \"poison\" with reason \"failed 3 times\"", dl)
		}
	}
}

func (s *suite) queueMaxAttemptsNotTerminated(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "maxatt2")
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, bus.Message{Data: []byte("stubborn")}))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1, MaxAttempts: 1})
	settle(t, ctx, "consume", err)
	for want := 1; want <= 2; want++ {
		d := recv(t, ds, s.d(10*time.Second), "delivery")
		if d.Attempt() != want {
			t.Fatalf("Attempt() = %d, want %d", d.Attempt(), want)
		}
		settle(t, ctx, "nak", d.Nak(ctx, 0))
	}
	// Past MaxAttempts+1 deliveries the bus stops delivering it.
	none(t, ds, s.d(1500*time.Millisecond), "after the last attempt was nak'ed")
}

func (s *suite) queueConsumeStops(t *testing.T) {
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "stop")
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, bus.Message{Data: []byte("held")}))
	cctx, cancel := context.WithCancel(ctx)
	ds, err := b.Consume(cctx, q, bus.QueueOptions{Prefetch: 1, Lease: s.d(time.Second)})
	settle(t, ctx, "consume", err)
	recv(t, ds, s.d(10*time.Second), "delivery")
	cancel()
	select {
	case _, ok := <-ds:
		if ok {
			t.Fatalf("delivery after the context ended")
		}
	case <-time.After(s.d(5 * time.Second)):
		t.Fatalf("Consume channel not closed after ctx was cancelled")
	}
	// The unsettled delivery goes back to the queue.
	ds2, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1})
	settle(t, ctx, "consume again", err)
	d := recv(t, ds2, s.d(15*time.Second), "redelivery after the consumer stopped")
	if string(d.Message().Data) != "held" || d.Attempt() != 2 {
		t.Errorf("got %q attempt %d, want \"held\" attempt 2", d.Message().Data, d.Attempt())
	}
	settle(t, ctx, "ack", d.Ack(ctx))
}

func (s *suite) streamWildcards(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "wild")
	subs := map[string][]string{
		root + ".*.done":  {root + ".a.done", root + ".b.done"},
		root + ".>":       {root + ".a.done", root + ".b.done", root + ".a.sub.done", root + ".a"},
		root + ".a.>":     {root + ".a.done", root + ".a.sub.done"},
		root + ".a.done":  {root + ".a.done"},
		root + ".*":       {root + ".a"},
		root + ".*.*.xyz": {},
	}
	chans := map[string]<-chan bus.Message{}
	for p := range subs {
		ch, err := b.Subscribe(ctx, p, bus.SubscribeOptions{})
		settle(t, ctx, "subscribe "+p, err)
		chans[p] = ch
	}
	before := time.Now()
	publish := []string{root + ".a.done", root + ".b.done", root + ".a.sub.done", root + ".a", root + "x.a.done"}
	for _, subj := range publish {
		settle(t, ctx, "publish", b.Publish(ctx, subj, bus.Message{Data: []byte(subj), Header: map[string]string{"k": "v"}}))
	}
	for p, want := range subs {
		var got []string
		for range want {
			m := recv(t, chans[p], s.d(10*time.Second), "message for "+p)
			if string(m.Data) != m.Subject {
				t.Errorf("%s: Subject %q carries %q", p, m.Subject, m.Data)
			}
			if m.Header["k"] != "v" {
				t.Errorf("%s: Header = %v, want k=v", p, m.Header)
			}
			if m.Time.Before(before.Add(-2*time.Second)) || m.Time.After(time.Now().Add(2*time.Second)) {
				t.Errorf("%s: Time = %v, want about now", p, m.Time)
			}
			got = append(got, m.Subject)
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s got %v, want %v", p, got, w)
		}
	}
	for p, ch := range chans {
		none(t, ch, s.d(300*time.Millisecond), "extra message for "+p)
	}
}

func (s *suite) streamOrdering(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "order")
	count := n(300, 60)
	ch, err := b.Subscribe(ctx, root+".>", bus.SubscribeOptions{})
	settle(t, ctx, "subscribe", err)
	// Two publishers, one per subject, publishing concurrently.
	var wg sync.WaitGroup
	for _, job := range []string{"j1", "j2"} {
		pub := s.newBus(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range count {
				if err := pub.Publish(ctx, root+"."+job+".event", bus.Message{Data: []byte(strconv.Itoa(i))}); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	next := map[string]int{}
	for range 2 * count {
		m := recv(t, ch, s.d(20*time.Second), "event")
		i, _ := strconv.Atoi(string(m.Data))
		if i != next[m.Subject] {
			t.Fatalf("%s: got event %d, want %d (per-subject order broken)", m.Subject, i, next[m.Subject])
		}
		next[m.Subject]++
	}
	wg.Wait()
	none(t, ch, s.d(300*time.Millisecond), "extra event")
}

func (s *suite) streamReplaySince(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "replay")
	start := time.Now()
	pub := func(from, to int) {
		for i := from; i < to; i++ {
			settle(t, ctx, "publish", b.Publish(ctx, root+".e", bus.Message{Data: []byte(strconv.Itoa(i))}))
		}
	}
	expect := func(ch <-chan bus.Message, from, to int, what string) {
		t.Helper()
		for i := from; i < to; i++ {
			m := recv(t, ch, s.d(10*time.Second), what)
			if string(m.Data) != strconv.Itoa(i) {
				t.Fatalf("%s: got %q, want %d", what, m.Data, i)
			}
		}
	}
	pub(0, 5)
	time.Sleep(50 * time.Millisecond)
	mark := time.Now()
	time.Sleep(50 * time.Millisecond)
	pub(5, 10)

	all, err := b.Subscribe(ctx, root+".>", bus.SubscribeOptions{Since: start.Add(-time.Millisecond)})
	settle(t, ctx, "subscribe since start", err)
	fromMark, err := b.Subscribe(ctx, root+".e", bus.SubscribeOptions{Since: mark})
	settle(t, ctx, "subscribe since mark", err)
	live, err := b.Subscribe(ctx, root+".e", bus.SubscribeOptions{})
	settle(t, ctx, "subscribe live", err)
	expect(all, 0, 10, "replay from the start")
	expect(fromMark, 5, 10, "replay from the mark")
	none(t, live, s.d(300*time.Millisecond), "live subscriber before new events")
	pub(10, 12)
	expect(all, 10, 12, "live after replay")
	expect(fromMark, 10, 12, "live after replay from mark")
	expect(live, 10, 12, "live")
	for what, ch := range map[string]<-chan bus.Message{"all": all, "mark": fromMark, "live": live} {
		none(t, ch, s.d(300*time.Millisecond), "extra event on "+what)
	}
}

func (s *suite) broadcast(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "bcast")
	other := s.newBus(t)
	all, err := other.Listen(ctx, root+".>")
	settle(t, ctx, "listen", err)
	cancels, err := b.Listen(ctx, root+".*.cancel")
	settle(t, ctx, "listen", err)
	settle(t, ctx, "notify", b.Notify(ctx, root+".j1.cancel", []byte("stop j1")))
	settle(t, ctx, "notify", b.Notify(ctx, root+".j1.progress", []byte("50%")))
	for _, want := range []string{"stop j1", "50%"} {
		m := recv(t, all, s.d(5*time.Second), "broadcast")
		if string(m.Data) != want {
			t.Errorf("got %q, want %q", m.Data, want)
		}
	}
	m := recv(t, cancels, s.d(5*time.Second), "cancel broadcast")
	if string(m.Data) != "stop j1" || m.Subject != root+".j1.cancel" {
		t.Errorf("got %q on %q, want \"stop j1\" on %s.j1.cancel", m.Data, m.Subject, root)
	}
	none(t, cancels, s.d(300*time.Millisecond), "non-matching broadcast")
	// Listening stops with ctx.
	lctx, cancel := context.WithCancel(ctx)
	ch, err := b.Listen(lctx, root+".x")
	settle(t, ctx, "listen", err)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Errorf("broadcast after cancel")
		}
	case <-time.After(s.d(5 * time.Second)):
		t.Errorf("Listen channel not closed after cancel")
	}
}

func (s *suite) requestReply(t *testing.T) {
	t.Parallel()
	srv, cli, ctx, subj := s.newBus(t), s.newBus(t), s.ctx(t), s.name(t, "rpc")
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	err := srv.Serve(sctx, subj, func(ctx context.Context, req bus.Message) ([]byte, error) {
		if string(req.Data) == "fail" {
			return nil, errors.New("job j1 not found")
		}
		return append([]byte("echo "), req.Data...), nil
	})
	settle(t, ctx, "serve", err)
	got, err := cli.Request(ctx, subj, []byte("hello"))
	if err != nil || string(got) != "echo hello" {
		t.Fatalf("request = %q, %v; want \"echo hello\"", got, err)
	}
	_, err = cli.Request(ctx, subj, []byte("fail"))
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.Msg != "job j1 not found" {
		t.Errorf("request to a failing handler: %v (%T), want *bus.RemoteError \"job j1 not found\"", err, err)
	}
	// Concurrent requests each get their own reply.
	var wg sync.WaitGroup
	for i := range n(50, 10) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := "echo " + strconv.Itoa(i)
			got, err := cli.Request(ctx, subj, []byte(strconv.Itoa(i)))
			if err != nil || string(got) != want {
				t.Errorf("concurrent request %d = %q, %v; want %q", i, got, err, want)
			}
		}()
	}
	wg.Wait()
	if _, err := cli.Request(ctx, s.name(t, "nobody"), []byte("x")); !errors.Is(err, bus.ErrNoResponders) {
		t.Errorf("request nobody serves: %v, want ErrNoResponders", err)
	}
	// Once the server stops, nobody responds (a bus may take a moment to
	// notice).
	stop()
	deadline := time.Now().Add(s.d(10 * time.Second))
	for {
		rctx, cancel := context.WithTimeout(ctx, s.d(2*time.Second))
		_, err := cli.Request(rctx, subj, []byte("hello"))
		cancel()
		if errors.Is(err, bus.ErrNoResponders) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request after Serve's ctx ended: %v, want ErrNoResponders", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *suite) requestLoadShared(t *testing.T) {
	t.Parallel()
	ctx, subj := s.ctx(t), s.name(t, "rpcshare")
	var mu sync.Mutex
	served := map[string]int{}
	for _, id := range []string{"s1", "s2"} {
		err := s.newBus(t).Serve(ctx, subj, func(ctx context.Context, req bus.Message) ([]byte, error) {
			mu.Lock()
			served[id]++
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			return []byte(id), nil
		})
		settle(t, ctx, "serve", err)
	}
	cli := s.newBus(t)
	total := n(40, 20)
	var wg sync.WaitGroup
	for range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cli.Request(ctx, subj, []byte("x")); err != nil {
				t.Errorf("request: %v", err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if served["s1"]+served["s2"] != total || served["s1"] == 0 || served["s2"] == 0 {
		t.Errorf("served %v of %d requests: want each request served once, by both servers", served, total)
	}
}

func (s *suite) largeMessages(t *testing.T) {
	t.Parallel()
	b, ctx := s.newBus(t), s.ctx(t)
	lim, ok := b.(bus.Limits)
	if !ok {
		t.Skip("the bus does not implement bus.Limits")
	}
	max := lim.MaxMessageSize()
	if max < 1024 {
		t.Fatalf("MaxMessageSize() = %d, want a usable limit", max)
	}
	big := make([]byte, max)
	_, _ = rand.Read(big)
	q, subj := s.name(t, "large"), s.subject(t, "large")
	settle(t, ctx, "enqueue at the limit", b.Enqueue(ctx, q, bus.Message{Data: big}))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{})
	settle(t, ctx, "consume", err)
	d := recv(t, ds, s.d(20*time.Second), "large delivery")
	if !bytes.Equal(d.Message().Data, big) {
		t.Errorf("large message: got %d bytes, want the %d sent", len(d.Message().Data), len(big))
	}
	settle(t, ctx, "ack", d.Ack(ctx))
	sub, err := b.Subscribe(ctx, subj, bus.SubscribeOptions{})
	settle(t, ctx, "subscribe", err)
	settle(t, ctx, "publish at the limit", b.Publish(ctx, subj, bus.Message{Data: big}))
	if m := recv(t, sub, s.d(20*time.Second), "large event"); !bytes.Equal(m.Data, big) {
		t.Errorf("large event: got %d bytes, want %d", len(m.Data), len(big))
	}
	over := make([]byte, max+1)
	for what, err := range map[string]error{
		"Enqueue": b.Enqueue(ctx, q, bus.Message{Data: over}),
		"Publish": b.Publish(ctx, subj, bus.Message{Data: over}),
		"Notify":  b.Notify(ctx, subj, over),
	} {
		if !errors.Is(err, bus.ErrTooLarge) {
			t.Errorf("%s of %d bytes: %v, want ErrTooLarge", what, len(over), err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.d(5*time.Second))
	defer cancel()
	if _, err := b.Request(rctx, s.name(t, "largerpc"), over); !errors.Is(err, bus.ErrTooLarge) {
		t.Errorf("Request of %d bytes: %v, want ErrTooLarge", len(over), err)
	}
	// Nothing of the refused enqueue reached the queue.
	none(t, ds, s.d(500*time.Millisecond), "after refused enqueue")
}

func (s *suite) purge(t *testing.T) {
	if !s.f.Purge {
		t.Skip("the bus does not purge (Features.Purge unset)")
	}
	t.Parallel()
	b, ctx, q := s.newBus(t), s.ctx(t), s.name(t, "purge")
	p, ok := b.(bus.Purger)
	if !ok {
		t.Fatalf("Features.Purge is set but the bus does not implement bus.Purger")
	}
	var msgs []bus.Message
	for i := range 10 {
		msgs = append(msgs, bus.Message{Key: "job" + strconv.Itoa(i%2), Data: []byte(strconv.Itoa(i))})
	}
	settle(t, ctx, "enqueue", b.Enqueue(ctx, q, msgs...))
	settle(t, ctx, "purge", p.Purge(ctx, q, "job0"))
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 10})
	settle(t, ctx, "consume", err)
	for range 5 {
		d := recv(t, ds, s.d(10*time.Second), "delivery")
		if d.Message().Key != "job1" {
			t.Errorf("got a message of %q after purging job0", d.Message().Key)
		}
		settle(t, ctx, "ack", d.Ack(ctx))
	}
	none(t, ds, s.d(500*time.Millisecond), "after purge")
}

func (s *suite) closed(t *testing.T) {
	t.Parallel()
	b, ctx := s.newBus(t), s.ctx(t)
	q, subj := s.name(t, "closed"), s.subject(t, "closed")
	ds, err := b.Consume(ctx, q, bus.QueueOptions{})
	settle(t, ctx, "consume", err)
	sub, err := b.Subscribe(ctx, subj, bus.SubscribeOptions{})
	settle(t, ctx, "subscribe", err)
	ls, err := b.Listen(ctx, subj)
	settle(t, ctx, "listen", err)
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for what, closed := range map[string]func() bool{
		"Consume":   func() bool { _, ok := <-ds; return !ok },
		"Subscribe": func() bool { _, ok := <-sub; return !ok },
		"Listen":    func() bool { _, ok := <-ls; return !ok },
	} {
		done := make(chan bool, 1)
		go func() { done <- closed() }()
		select {
		case ok := <-done:
			if !ok {
				t.Errorf("%s channel delivered after Close", what)
			}
		case <-time.After(s.d(5 * time.Second)):
			t.Errorf("%s channel not closed by Close", what)
		}
	}
	for what, err := range map[string]error{
		"Enqueue": b.Enqueue(ctx, q, bus.Message{Data: []byte("x")}),
		"Publish": b.Publish(ctx, subj, bus.Message{Data: []byte("x")}),
		"Notify":  b.Notify(ctx, subj, []byte("x")),
	} {
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	if _, err := b.Request(ctx, subj, nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Request after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Consume(ctx, q, bus.QueueOptions{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Consume after Close: %v, want ErrClosed", err)
	}
}
