package natsbus

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// Dir holds JetStream's files. Empty: a new temporary directory,
	// removed by Shutdown.
	Dir string
	// Listen exposes the server on this host:port (e.g. "127.0.0.1:4222",
	// port 0 for a free one); empty: no network listener, in-process
	// connections only.
	Listen string
	// MaxPayload is the largest message. Default 8 MiB.
	MaxPayload int32
}

// Embedded is a running in-process server.
type Embedded struct {
	srv    *server.Server
	dir    string
	tmpDir bool
}

// StartEmbedded starts a NATS server with JetStream in this process.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	e := &Embedded{dir: cfg.Dir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "skein-nats-")
		if err != nil {
			return nil, fmt.Errorf("natsbus: embedded server dir: %w", err)
		}
		e.dir, e.tmpDir = d, true
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 8 << 20
	}
	o := &server.Options{
		ServerName:         "skein-embedded",
		JetStream:          true,
		StoreDir:           e.dir,
		MaxPayload:         cfg.MaxPayload,
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.Listen == "" {
		o.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		o.Host, o.Port = host, port
	}
	srv, err := server.NewServer(o)
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("natsbus: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		e.cleanup()
		return nil, fmt.Errorf("natsbus: embedded server did not start")
	}
	e.srv = srv
	return e, nil
}

func splitHostPort(hp string) (string, int, error) {
	var host string
	var port int
	i := len(hp) - 1
	for i >= 0 && hp[i] != ':' {
		i--
	}
	if i < 0 {
		return "", 0, fmt.Errorf("natsbus: listen address %q: want host:port", hp)
	}
	host = hp[:i]
	if _, err := fmt.Sscanf(hp[i+1:], "%d", &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("natsbus: listen address %q: bad port", hp)
	}
	if port == 0 {
		port = -1 // the server picks a free port
	}
	return host, port, nil
}

// Connect opens an in-process connection to the embedded server.
func (e *Embedded) Connect(ctx context.Context, opts Options) (*Bus, error) {
	opts.server = e.srv
	return Connect(ctx, "", opts)
}

// ClientURL is the server's nats:// URL when it listens on the network.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and removes a temporary directory.
//
// JetStream is stopped first, on its own: Shutdown alone tells every
// pull request still waiting that the server is going (for clients that
// stay connected and move to another server) and then sleeps 50 ms for
// those notices to leave. The clients of an embedded server are this
// process's, closed by now, and a runtime always leaves a request
// waiting on an empty queue: that sleep was more than half of a one-task
// embedded job.
func (e *Embedded) Shutdown() {
	_ = e.srv.ShutdownJetStream()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.cleanup()
}

func (e *Embedded) cleanup() {
	if e.tmpDir {
		_ = os.RemoveAll(e.dir)
	}
}

// Server is the embedded server (benchmarks connect to it directly).
func (e *Embedded) Server() *server.Server { return e.srv }
