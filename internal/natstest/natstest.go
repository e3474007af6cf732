// Package natstest starts the embedded NATS server and connects to it,
// for tests: each is undone when the test ends.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
)

// Server starts an embedded NATS server (JetStream on a temporary
// store, loopback only), shut down when the test ends.
func Server(t testing.TB) *natsbus.Embedded {
	t.Helper()
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect opens a bus on srv, closed when the test ends (before srv
// shuts down).
func Connect(t testing.TB, srv *natsbus.Embedded, opts natsbus.Options) *natsbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := srv.Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
