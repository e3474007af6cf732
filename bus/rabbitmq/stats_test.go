package rabbitmq_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestStats: QueueDepth counts the messages a queue holds (in the bus'
// namespace), an unknown queue is an error, and a fresh connection is
// connected with no reconnection.
func TestStats(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	b, _ := connect(t, url, rabbitmq.Options{Prefix: "stats" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := "depth-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := b.Enqueue(ctx, q, bus.Message{Data: []byte("a")}, bus.Message{Data: []byte("b")}, bus.Message{Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.QueueDepth(ctx, q); err != nil || n != 3 {
		t.Errorf("QueueDepth = %d, %v; want 3", n, err)
	}
	if _, err := b.QueueDepth(ctx, q+"-none"); err == nil {
		t.Error("QueueDepth of a queue that does not exist: no error")
	}
	if !b.Connected() || b.Reconnects() != 0 {
		t.Errorf("Connected %v, Reconnects %d on a fresh bus", b.Connected(), b.Reconnects())
	}
}
