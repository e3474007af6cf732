package rabbitmq_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestLeaseAfterClose holds a delivery, unsettled, while its bus closes:
// the broker takes the message back with the connection, so the bus's
// lease on it ends there too. Its timer used to fire later all the same
// and log a lease expiry for a delivery of a closed bus (after the test
// had ended: a panic in CI).
func TestLeaseAfterClose(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-leaseclose-%d", time.Now().UnixNano())
	b, lg := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Enqueue(ctx, "q", bus.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	const lease = 300 * time.Millisecond
	ds, err := b.Consume(ctx, "q", bus.QueueOptions{Prefetch: 1, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	d := <-ds
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * lease)
	if s := lg.String(); strings.Contains(s, "lease expired") {
		t.Errorf("a lease expired after the bus closed:\n%s", s)
	}
	if err := d.Ack(ctx); err == nil {
		t.Error("ack of a delivery of a closed bus: nil error")
	}
}
