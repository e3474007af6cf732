// Package dial opens a bus from a URL: nats://, tls:// (NATS), and
// amqp://, amqps:// (RabbitMQ).
package dial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/logging"
)

// ErrBadURL reports a bus URL that cannot name a bus.
var ErrBadURL = errors.New("bad bus URL")

// Options apply to every kind of bus.
type Options struct {
	Name   string
	Logger *slog.Logger
	// ConnectTimeout bounds the first connection. Default 5s.
	ConnectTimeout time.Duration
	// Role is the program's role (RoleSubmitter, RoleCoordinator,
	// RoleRuntime): on NATS it names the reply inbox,
	// "_INBOX.<namespace>.<role>", the only one the role's user may read
	// on a server configured from deploy/nats. Empty: "_INBOX".
	Role string
	// Credentials replace the URL's and add TLS.
	Credentials Credentials
}

// openers holds the bus kinds by URL scheme; RabbitMQ registers itself
// from its own file so that this package's core has no AMQP dependency.
var openers = map[string]func(ctx context.Context, u string, o Options) (bus.Bus, error){
	"nats": openNATS, "tls": openNATS, "ws": openNATS, "wss": openNATS,
}

func openNATS(ctx context.Context, raw string, o Options) (bus.Bus, error) {
	urls, prefix, err := splitNamespace(raw)
	if err != nil {
		return nil, err
	}
	urls, replicas, err := splitReplicas(urls)
	if err != nil {
		return nil, err
	}
	c := o.Credentials
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	no := natsbus.Options{
		Name: o.Name, Logger: o.Logger, ConnectTimeout: o.ConnectTimeout, Prefix: prefix, Replicas: replicas,
		Token: c.Token, NKeyFile: c.NKeyFile, CredsFile: c.CredsFile, TLS: tlsCfg,
		InboxPrefix: c.InboxPrefix,
	}
	if c.User != "" || c.Password != "" {
		no.User, no.Password = c.User, c.Password
		if no.User == "" {
			no.User = userFromURL(urls)
		}
		if no.User == "" {
			return nil, fmt.Errorf("%w: a password needs a user name: put it in the URL (nats://USER@host:4222) or in SKEIN_BUS_USER", ErrBadCredentials)
		}
		urls = stripUserInfo(urls)
	} else if c.Token != "" || c.NKeyFile != "" || c.CredsFile != "" {
		urls = stripUserInfo(urls)
	}
	if no.InboxPrefix == "" && o.Role != "" {
		ns := prefix
		if ns == "" {
			ns = "skein"
		}
		no.InboxPrefix = "_INBOX." + ns + "." + o.Role
	}
	return natsbus.Connect(ctx, urls, no)
}

// splitNamespace takes the "?ns=NAME" query off every URL of a list: a
// namespace isolates installations that share a broker (subjects,
// streams and queues all carry it). Default "skein".
func splitNamespace(raw string) (urls, ns string, err error) {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, perr := url.Parse(strings.TrimSpace(p))
		if perr != nil {
			return "", "", fmt.Errorf("%w %q: %v", ErrBadURL, Redact(p), perr)
		}
		q := u.Query()
		if v := q.Get("ns"); v != "" {
			if ns != "" && ns != v {
				return "", "", fmt.Errorf("%w %q: the URLs name different namespaces", ErrBadURL, Redact(raw))
			}
			ns = v
		}
		q.Del("ns")
		u.RawQuery = q.Encode()
		parts[i] = u.String()
	}
	return strings.Join(parts, ","), ns, nil
}

// Open connects to the bus at rawURL.
func Open(ctx context.Context, rawURL string, o Options) (bus.Bus, error) {
	rawURL = strings.TrimSpace(rawURL)
	first := strings.TrimSpace(strings.Split(rawURL, ",")[0])
	u, err := url.Parse(first)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("%w %q: want nats://host:port or amqp://host:port", ErrBadURL, Redact(rawURL))
	}
	open, ok := openers[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("%w %q: unknown scheme %q (want nats, tls, amqp or amqps)", ErrBadURL, Redact(rawURL), u.Scheme)
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.Credentials.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout+5*time.Second)
	defer cancel()
	return open(ctx, rawURL, o)
}

// Redact hides credentials in a URL (or a comma-separated list of URLs):
// logging.RedactURL on each.
func Redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = logging.RedactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
