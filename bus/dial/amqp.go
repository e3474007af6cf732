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
	c := o.Credentials
	if c.Token != "" || c.NKeyFile != "" || c.CredsFile != "" || c.InboxPrefix != "" {
		return nil, fmt.Errorf("%w: tokens, NKEYs, creds files and inbox prefixes are NATS credentials; RabbitMQ takes a user and password", ErrBadCredentials)
	}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil && !strings.HasPrefix(u, "amqps:") {
		return nil, fmt.Errorf("%w %q: TLS options need an amqps:// URL", ErrBadURL, Redact(raw))
	}
	ro := rabbitmq.Options{Logger: o.Logger, Prefix: ns, DialTimeout: o.ConnectTimeout, TLS: tlsCfg}
	if c.User != "" || c.Password != "" {
		ro.Username, ro.Password = c.User, c.Password
		if ro.Username == "" {
			ro.Username = userFromURL(u)
		}
		if ro.Username == "" {
			ro.Username = "guest"
		}
	}
	return rabbitmq.Connect(ctx, u, ro)
}
