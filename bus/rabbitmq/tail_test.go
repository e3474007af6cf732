package rabbitmq_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// prefix is a namespace of its own per test: its event stream carries
// only the test's messages, so that counts of what the bus read are
// exact.
func prefix(what string) string {
	return what + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
}

// TestSubscriptionsShareTheTail: 50 live subscriptions, one per job, on
// one bus read each event of the stream from the broker about once, not
// once per subscription (50 jobs reading every event 50 times made many
// concurrent jobs O(jobs²) on RabbitMQ). Each still sees exactly its own
// messages, in order.
func TestSubscriptionsShareTheTail(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	p := prefix("tail")
	sub, _ := connect(t, url, rabbitmq.Options{Prefix: p})
	pub, _ := connect(t, url, rabbitmq.Options{Prefix: p})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const jobs, rounds = 50, 10
	chans := make([]<-chan bus.Message, jobs)
	for j := range jobs {
		ch, err := sub.Subscribe(ctx, fmt.Sprintf("job.%d.>", j), bus.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		chans[j] = ch
	}
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	for j, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- readExactly(ctx, ch, fmt.Sprintf("job.%d.", j), rounds)
		}()
	}
	for r := range rounds {
		for j := range jobs {
			if err := pub.Publish(ctx, fmt.Sprintf("job.%d.task", j), bus.Message{Data: []byte(strconv.Itoa(r))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	events := uint64(jobs * rounds)
	if reads := sub.StreamReads(); reads > 2*events {
		t.Errorf("the bus took %d deliveries from the broker for %d events and %d subscriptions (%.1f per event); want at most 2 per event", reads, events, jobs, float64(reads)/float64(events))
	} else {
		t.Logf("%d deliveries for %d events and %d subscriptions", reads, events, jobs)
	}
}

// readExactly reads n messages 0..n-1 in order on subjects under root,
// then checks that nothing else arrives for a moment.
func readExactly(ctx context.Context, ch <-chan bus.Message, root string, n int) error {
	var last uint64
	for i := range n {
		select {
		case m, ok := <-ch:
			if !ok {
				return fmt.Errorf("%s: closed after %d messages", root, i)
			}
			if len(m.Subject) < len(root) || m.Subject[:len(root)] != root {
				return fmt.Errorf("%s: got a message on %s", root, m.Subject)
			}
			if string(m.Data) != strconv.Itoa(i) {
				return fmt.Errorf("%s: message %d is %q", root, i, m.Data)
			}
			if m.Seq <= last {
				return fmt.Errorf("%s: position %d after %d", root, m.Seq, last)
			}
			last = m.Seq
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d messages: %w", root, i, n, ctx.Err())
		}
	}
	return nil
}

// TestStalledSubscriberLeavesTheTail: with a tail buffer of 8 messages, a
// subscriber that does not read is let go by the shared tail instead of
// holding it up: a second subscriber on the same bus gets all its
// messages meanwhile. The stalled one then gets every one of its own, in
// order (from the tail's buffer, then its own consumer, then the tail
// again), and a third one that started far back catches up the same way.
func TestStalledSubscriberLeavesTheTail(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	p := prefix("stall")
	sub, _ := connect(t, url, rabbitmq.Options{Prefix: p, SubscriberBuffer: 8, StreamPrefetch: 16})
	pub, _ := connect(t, url, rabbitmq.Options{Prefix: p})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const count = 300
	first, err := pub.PublishSeq(ctx, "job.late.task", bus.Message{Data: []byte("0")})
	if err != nil {
		t.Fatal(err)
	}
	stalled, err := sub.Subscribe(ctx, "job.stalled.>", bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	busy, err := sub.Subscribe(ctx, "job.busy.>", bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	busyDone := make(chan error, 1)
	go func() { busyDone <- readExactly(ctx, busy, "job.busy.", count) }()
	late := make(chan error, 1)
	published := make(chan error, 1)
	go func() {
		for i := range count {
			for _, j := range []string{"stalled", "busy", "late"} {
				if j == "late" && i == count-1 {
					continue // the late one's 0 went first
				}
				n := i
				if j == "late" {
					n = i + 1
				}
				if err := pub.Publish(ctx, "job."+j+".task", bus.Message{Data: []byte(strconv.Itoa(n))}); err != nil {
					published <- err
					return
				}
			}
			if i == count/2 {
				go func() {
					ch, err := sub.Subscribe(ctx, "job.late.>", bus.SubscribeOptions{From: first})
					if err != nil {
						late <- err
						return
					}
					late <- readExactly(ctx, ch, "job.late.", count)
				}()
			}
		}
		published <- nil
	}()
	if err := <-busyDone; err != nil {
		t.Fatalf("the busy subscriber, while another stalls: %v", err)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if err := readExactly(ctx, stalled, "job.stalled.", count); err != nil {
		t.Errorf("the stalled subscriber: %v", err)
	}
	if err := <-late; err != nil {
		t.Errorf("the subscriber from the start: %v", err)
	}
	for what, ch := range map[string]<-chan bus.Message{"stalled": stalled, "busy": busy} {
		select {
		case m := <-ch:
			t.Errorf("%s: extra message %q on %s", what, m.Data, m.Subject)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestManySubscribersSurviveBrokerRestart: 20 subscriptions on one bus
// (live ones and ones from an earlier position, with a tail buffer small
// enough that they also fall off the tail and rejoin), while a publisher
// keeps publishing and the broker is stopped and started: every
// subscription gets every message of its subject, in order; a message
// may come twice only where the publisher retried it.
func TestManySubscribersSurviveBrokerRestart(t *testing.T) {
	if testing.Short() && !testenv.CI() {
		t.Skip("restarts a private broker; not in -short")
	}
	url, line := testenv.PrivateRabbitMQ(t)
	sub, _ := connect(t, url, rabbitmq.Options{Prefix: "restart", SubscriberBuffer: 16, StreamPrefetch: 32})
	pub, _ := connect(t, url, rabbitmq.Options{Prefix: "restart"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const subjects, count = 10, 300
	first, err := pub.PublishSeq(ctx, "job.mark", bus.Message{Data: []byte("mark")})
	if err != nil {
		t.Fatal(err)
	}
	type reader struct {
		name string
		subj int
		mu   sync.Mutex
		got  []int
	}
	var readers []*reader
	for j := range subjects {
		for _, from := range []uint64{0, first} {
			r := &reader{name: fmt.Sprintf("job.%d from %d", j, from), subj: j}
			ch, err := sub.Subscribe(ctx, fmt.Sprintf("job.%d.>", j), bus.SubscribeOptions{From: from})
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for m := range ch {
					i, _ := strconv.Atoi(string(m.Data))
					r.mu.Lock()
					r.got = append(r.got, i)
					r.mu.Unlock()
				}
			}()
			readers = append(readers, r)
		}
	}
	down := make(chan struct{})
	go func() {
		for i := range count {
			if i == count/3 {
				select {
				case <-down:
				case <-ctx.Done():
					return
				}
			}
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				err := pub.Publish(pctx, fmt.Sprintf("job.%d.task", i%subjects), bus.Message{Data: []byte(strconv.Itoa(i))})
				pcancel()
				if err == nil {
					break
				}
				t.Logf("publish %d (retrying): %v", i, err)
			}
		}
	}()
	// have reports how many distinct messages the slowest reader has of
	// those up to n.
	have := func(n int) bool {
		for _, r := range readers {
			r.mu.Lock()
			seen := map[int]bool{}
			for _, i := range r.got {
				if i < n {
					seen[i] = true
				}
			}
			r.mu.Unlock()
			want := 0
			for i := r.subj; i < n; i += subjects {
				want++
			}
			if len(seen) < want {
				return false
			}
		}
		return true
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("%s: %v", what, ctx.Err())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the first third read", func() bool { return have(count / 3) })
	if err := ctl(t, line, "stop-broker")(); err != nil {
		t.Fatal(err)
	}
	close(down)
	if err := ctl(t, line, "start-broker")(); err != nil {
		t.Fatal(err)
	}
	waitFor("every message read after the restart", func() bool { return have(count) })
	for _, r := range readers {
		r.mu.Lock()
		last := -1
		for _, i := range r.got {
			if i%subjects != r.subj || i < last {
				t.Errorf("%s: %d after %d (got %v)", r.name, i, last, r.got)
				break
			}
			last = i
		}
		r.mu.Unlock()
	}
}
