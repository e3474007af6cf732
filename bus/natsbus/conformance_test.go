package natsbus_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/bustest"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/testenv"
)

type tlog struct{ t testing.TB }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func connect(t *testing.T, urls string) bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.Connect(ctx, urls, natsbus.Options{Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestConformanceEmbedded runs the suite against the embedded server,
// reached over TCP on loopback so that the restart test (shut the server
// down, start it again on the same port and store) exercises the client's
// reconnection.
func TestConformanceEmbedded(t *testing.T) {
	cfg := natsbus.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"}
	e, err := natsbus.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = u.Host // keep the port across the restart
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if e != nil {
			e.Shutdown()
		}
	})
	f := bustest.Features{
		Purge: true,
		StopBroker: func() error {
			mu.Lock()
			defer mu.Unlock()
			e.Shutdown()
			e = nil
			return nil
		},
		StartBroker: func() error {
			mu.Lock()
			defer mu.Unlock()
			var err error
			e, err = natsbus.StartEmbedded(cfg)
			return err
		},
	}
	clientURL := e.ClientURL()
	bustest.Run(t, f, func(t *testing.T) bus.Bus { return connect(t, clientURL) })
}

// TestConformanceServer runs the suite against the nats-server processes
// started by scripts/services/nats.sh: the oldest supported version
// (Debian's 2.9.10) and the newest (built from go.mod's nats-server
// module). See docs/deploy.md, "Supported NATS servers".
func TestConformanceServer(t *testing.T) {
	for _, v := range []struct{ name, env string }{
		{"Oldest", testenv.NATSURL},
		{"Newest", testenv.NATSURLNewest},
	} {
		t.Run(v.name, func(t *testing.T) {
			u := testenv.Require(t, v.env)
			bustest.Run(t, bustest.Features{Purge: true}, func(t *testing.T) bus.Bus { return connect(t, u) })
		})
	}
}
