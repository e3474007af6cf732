package rabbitmq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestSubscribeOnNewStream subscribes to a stream the broker has only
// just created. RabbitMQ may refuse the first attach to a new stream with
// 541 INTERNAL_ERROR (its members are still starting); Subscribe must
// attach anyway, as PublishSeq does. A CI run failed on this.
func TestSubscribeOnNewStream(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	for i := range 12 {
		prefix := fmt.Sprintf("skein-newstream-%d-%d", time.Now().UnixNano(), i)
		b, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for j := range 4 {
			if _, err := b.Subscribe(ctx, "a.>", bus.SubscribeOptions{}); err != nil {
				t.Fatalf("stream %s, subscriber %d: %v", prefix, j, err)
			}
		}
		cancel()
		_ = b.Close()
	}
}

// TestSubscribeOnNewNode is TestSubscribeOnNewStream on a node started for
// the test, with subscribers attaching at once from several connections
// (what the conformance suite's parallel tests do): the first stream of a
// node is the one whose attach failed in CI.
func TestSubscribeOnNewNode(t *testing.T) {
	url, _ := testenv.PrivateRabbitMQ(t)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			b, _ := connect(t, url, rabbitmq.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := b.Subscribe(ctx, fmt.Sprintf("s%d.>", i), bus.SubscribeOptions{})
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
