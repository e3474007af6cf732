package dial

import (
	"context"
	"fmt"
	"strings"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
)

func init() {
	openers["amqp"] = openAMQP
	openers["amqps"] = openAMQP
}

// openAMQP connects to RabbitMQ; "?ns=NAME" becomes the prefix of the
// exchanges and queues the bus declares.
func openAMQP(ctx context.Context, raw string, o Options) (bus.Bus, error) {
	if strings.Contains(raw, ",") {
		return nil, fmt.Errorf("%w %q: one amqp:// URL only (put a load balancer in front of a RabbitMQ cluster)", ErrBadURL, Redact(raw))
	}
	u, ns, err := splitNamespace(raw)
	if err != nil {
		return nil, err
	}
	return rabbitmq.Connect(ctx, u, rabbitmq.Options{Logger: o.Logger, Prefix: ns, DialTimeout: o.ConnectTimeout})
}
