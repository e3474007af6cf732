package rabbitmq_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestNewQueueConsumedTogether has two processes' buses, each holding a
// delivery of one queue, start consuming a queue nobody has used yet at
// the same moment. RabbitMQ answers the second declare of a new quorum
// queue at once, while the first declarer is still starting its Raft
// members, and a consume in that window crashes the broker's channel and
// closes the whole connection with 541. The deliveries held on that
// connection then went back to the queue, to be run twice: two runtimes
// starting together on a new pool did this. A consumer's trouble must
// cost only its own deliveries: the held ones stay held and their acks
// succeed.
func TestNewQueueConsumedTogether(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-newqueue-%d", time.Now().UnixNano())
	a, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	b, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 6 {
		held := fmt.Sprintf("held%d", round)
		if err := a.Enqueue(ctx, held, bus.Message{Data: []byte("a")}, bus.Message{Data: []byte("b")}); err != nil {
			t.Fatal(err)
		}
		var ds []bus.Delivery
		for _, x := range []*rabbitmq.Bus{a, b} {
			c, err := x.Consume(ctx, held, bus.QueueOptions{Prefetch: 1, Lease: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-c:
				ds = append(ds, d)
			case <-ctx.Done():
				t.Fatal("no delivery of the held queue")
			}
		}
		// Both consume a new queue at once.
		fresh := fmt.Sprintf("fresh%d", round)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 2)
		for i, x := range []*rabbitmq.Bus{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = x.Consume(ctx, fresh, bus.QueueOptions{Prefetch: 1, Lease: time.Minute})
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: bus %d consumes %s: %v", round, i, fresh, err)
			}
		}
		// Let a crashed connection be noticed.
		time.Sleep(500 * time.Millisecond)
		for i, d := range ds {
			if err := d.Ack(ctx); err != nil {
				t.Fatalf("round %d: bus %d lost its held delivery of %s when it consumed the new queue %s (it goes back to the queue and runs twice): ack: %v", round, i, held, fresh, err)
			}
		}
	}
}
