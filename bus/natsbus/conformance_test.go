package natsbus_test

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
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

// TestConformanceCluster runs the suite against the 3-node nats-server
// cluster of scripts/services/nats-cluster.sh, with every stream and
// consumer replicated on the three nodes. Its broker restart SIGKILLs the
// node that most of the restart test's buses are connected to, mid-run,
// and starts it again: those buses move to another node, stream and
// consumer leaders move, and the replicated streams keep every task and
// event.
func TestConformanceCluster(t *testing.T) {
	c := testenv.NATSClusterEnv(t)
	var (
		mu     sync.Mutex
		recent []*natsbus.Bus // the last buses made, newest last
		killed int
	)
	f := bustest.Features{
		Purge: true,
		StopBroker: func() error {
			mu.Lock()
			count := map[int]int{}
			killed = 1
			for _, b := range recent[max(len(recent)-3, 0):] {
				for i, u := range c.URLs {
					if b.Conn().ConnectedUrl() == u {
						count[i+1]++
						if count[i+1] > count[killed] {
							killed = i + 1
						}
					}
				}
			}
			mu.Unlock()
			t.Logf("buses on nodes %v: killing node %d", count, killed)
			_, err := c.Ctl("kill-node", strconv.Itoa(killed))
			return err
		},
		StartBroker: func() error {
			_, err := c.Ctl("start-node", strconv.Itoa(killed))
			return err
		},
		Slow: 2,
	}
	t.Cleanup(func() {
		// Whatever happened, the next test finds three nodes.
		if killed != 0 {
			if _, err := c.Ctl("start-node", strconv.Itoa(killed)); err != nil {
				t.Errorf("start node %d: %v", killed, err)
			}
		}
	})
	bustest.Run(t, f, func(t *testing.T) bus.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := natsbus.Connect(ctx, c.List(), natsbus.Options{Replicas: 3, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		mu.Lock()
		recent = append(recent, b)
		mu.Unlock()
		return b
	})
}
