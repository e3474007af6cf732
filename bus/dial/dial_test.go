package dial

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@h:4222", "nats://alice:REDACTED@h:4222"},
		{"nats://tok@h:4222,nats://bob:pw@h2:4222?ns=x", "nats://REDACTED@h:4222,nats://bob:REDACTED@h2:4222?ns=x"},
		{"amqps://u:p@h/vhost?token=abc", "amqps://u:REDACTED@h/vhost?token=REDACTED"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Several amqp:// URLs are the nodes of a RabbitMQ cluster; every URL of
// a list must be AMQP.
func TestAMQPList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "amqp://127.0.0.1:1/,nats://127.0.0.1:4222", Options{ConnectTimeout: time.Second})
	if !errors.Is(err, ErrBadURL) {
		t.Errorf("amqp and nats in one list: err = %v, want ErrBadURL", err)
	}
	_, err = Open(ctx, "amqp://127.0.0.1:1/?ns=a,amqp://127.0.0.1:2/?ns=a", Options{ConnectTimeout: time.Second})
	if errors.Is(err, ErrBadURL) || !errors.Is(err, bus.ErrUnreachable) {
		t.Errorf("two unreachable nodes: err = %v, want ErrUnreachable (a list is accepted)", err)
	}
}
