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
// exchanges and queues the bus declares. raw may list the nodes of a
// cluster, comma-separated: the bus connects to one and moves to the next
// live one when its node is lost (bus/rabbitmq).
func openAMQP(ctx context.Context, raw string, o Options) (bus.Bus, error) {
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
	for _, one := range strings.Split(u, ",") {
		if !strings.HasPrefix(one, "amqp:") && !strings.HasPrefix(one, "amqps:") {
			return nil, fmt.Errorf("%w %q: every URL of a list must be amqp:// or amqps://", ErrBadURL, Redact(raw))
		}
		if tlsCfg != nil && !strings.HasPrefix(one, "amqps:") {
			return nil, fmt.Errorf("%w %q: TLS options need amqps:// URLs", ErrBadURL, Redact(raw))
		}
	}
	ro := rabbitmq.Options{Name: o.Name, Logger: o.Logger, Prefix: ns, DialTimeout: o.ConnectTimeout, TLS: tlsCfg}
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
