package bustest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// brokerRestart stops and starts the broker while a producer enqueues
// tasks, a worker consumes them and publishes one event per task, and a
// subscriber reads the events. Every task whose Enqueue succeeded must be
// consumed and every event whose Publish succeeded must be read, on the
// same bus values: the buses reconnect by themselves. Duplicates are
// allowed (delivery is at least once) and counted.
func (s *suite) brokerRestart(t *testing.T) {
	if s.f.StopBroker == nil || s.f.StartBroker == nil {
		t.Skip("no broker restart commands (Features.StopBroker/StartBroker)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.d(3*time.Minute))
	defer cancel()
	prod, work, watch := s.newBus(t), s.newBus(t), s.newBus(t)
	q, root := s.name(t, "restart"), s.subject(t, "restart")
	count := n(300, 120)

	events, err := watch.Subscribe(ctx, root+".>", bus.SubscribeOptions{})
	settle(t, ctx, "subscribe", err)
	ds, err := work.Consume(ctx, q, bus.QueueOptions{Prefetch: 4, Lease: s.d(5 * time.Second)})
	settle(t, ctx, "consume", err)

	var (
		mu       sync.Mutex
		consumed = map[int]int{}
		seen     = map[int]int{}
		sendErrs atomic.Int64
		ackErrs  atomic.Int64
	)
	// Each attempt is bounded, as a coordinator bounds a publish: a bus
	// may lose a publish's confirmation across the restart.
	retry := func(what string, f func(ctx context.Context) error) {
		for ctx.Err() == nil {
			actx, cancel := context.WithTimeout(ctx, s.d(10*time.Second))
			err := f(actx)
			cancel()
			if err == nil {
				return
			}
			sendErrs.Add(1)
			t.Logf("%s failed (retrying, as a coordinator would): %v", what, err)
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Producer: a third before the restart, the rest once the broker is
	// down (these wait or fail until it is back).
	brokerDown := make(chan struct{})
	go func() {
		for i := range count {
			if i == count/3 {
				select {
				case <-brokerDown:
				case <-ctx.Done():
					return
				}
			}
			// The ID names the queue too: a bus may deduplicate IDs across
			// its queues for a while (JetStream: one window per stream),
			// and another run of the suite on the same broker uses the
			// same indexes.
			retry("enqueue", func(ctx context.Context) error {
				return prod.Enqueue(ctx, q, bus.Message{ID: q + "/t" + strconv.Itoa(i), Data: []byte(strconv.Itoa(i))})
			})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// Worker: publish the event, then ack (as a runtime does).
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		for d := range ds {
			i, err := strconv.Atoi(string(d.Message().Data))
			if err != nil {
				t.Errorf("bad task %q", d.Message().Data)
				continue
			}
			retry("publish", func(ctx context.Context) error {
				return work.Publish(ctx, root+".done", bus.Message{Data: d.Message().Data})
			})
			if err := d.Ack(ctx); err != nil {
				ackErrs.Add(1) // it will be redelivered
			}
			mu.Lock()
			consumed[i]++
			mu.Unlock()
		}
	}()
	// Subscriber.
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for m := range events {
			i, _ := strconv.Atoi(string(m.Data))
			mu.Lock()
			seen[i]++
			mu.Unlock()
		}
	}()

	progress := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(consumed), len(seen)
	}
	waitFor := func(what string, cond func() bool, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				c, e := progress()
				mu.Lock()
				missing := fmt.Sprintf("tasks never consumed: %s; events never read: %s", ranges(count, consumed), ranges(count, seen))
				mu.Unlock()
				t.Fatalf("%s: not within %s (%d/%d tasks consumed, %d events read; %s)", what, d, c, count, e, missing)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("first third consumed", func() bool { c, _ := progress(); return c >= count/3 }, s.d(60*time.Second))

	t.Log("stopping the broker")
	stopped := time.Now()
	if err := s.f.StopBroker(); err != nil {
		t.Fatalf("stop broker: %v", err)
	}
	close(brokerDown)
	time.Sleep(s.d(500 * time.Millisecond))
	t.Log("starting the broker")
	if err := s.f.StartBroker(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Logf("broker was down for %s", time.Since(stopped).Round(time.Millisecond))

	waitFor("all tasks consumed and all events read after the restart", func() bool {
		c, e := progress()
		return c == count && e == count
	}, s.d(2*time.Minute))
	time.Sleep(s.d(300 * time.Millisecond))
	cancel()
	<-workerDone
	<-subDone

	mu.Lock()
	defer mu.Unlock()
	dupTasks, dupEvents := 0, 0
	for i := range count {
		if consumed[i] == 0 {
			t.Errorf("task %d lost", i)
		}
		if seen[i] == 0 {
			t.Errorf("event %d lost", i)
		}
		dupTasks += max(consumed[i]-1, 0)
		dupEvents += max(seen[i]-1, 0)
	}
	t.Logf("%d tasks: %d redelivered, %d events read twice, %d send errors retried, %d acks lost",
		count, dupTasks, dupEvents, sendErrs.Load(), ackErrs.Load())
}

// ranges lists the indexes below count that have no entry in m, as
// ranges ("0-99, 250").
func ranges(count int, m map[int]int) string {
	var out []string
	for i := 0; i < count; i++ {
		if m[i] > 0 {
			continue
		}
		j := i
		for j+1 < count && m[j+1] == 0 {
			j++
		}
		if j == i {
			out = append(out, strconv.Itoa(i))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", i, j))
		}
		i = j
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
