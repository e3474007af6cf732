package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// awayBus is a real bus that, while away is set, reports itself
// disconnected and finds no one to answer its requests, as a client
// does while its broker restarts.
type awayBus struct {
	*natsbus.Bus
	away atomic.Bool
}

func (b *awayBus) Connected() bool { return !b.away.Load() && b.Bus.Connected() }

func (b *awayBus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if b.away.Load() {
		return nil, bus.ErrNoResponders
	}
	return b.Bus.Request(ctx, subject, data)
}

// TestWaitCountsNoAbsenceWhileTheBusIsAway: a waiting client counts a
// coordinator as lost only from what it sees while it has the bus. While
// its broker was away, its liveness checks found nobody and counted that
// against the coordinator, so that after a broker restart it gave the
// coordinator (itself reconnecting, or replaced) a second or two
// (TestChaosRabbitMQ: a submit exited 5 about 5 s after its broker came
// back, a second before the new coordinator).
func TestWaitCountsNoAbsenceWhileTheBusIsAway(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	co := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator"})
	serveCoordinator(t, ctx, co, coordinator.Config{})
	ab := &awayBus{Bus: natstest.Connect(t, srv, natsbus.Options{Name: "client"})}
	cl := client.New(ab)
	cl.LivenessInterval = time.Second // lost after two misses half a second apart at least
	st, err := cl.SubmitStatus(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value(`[1]`)})
	if err != nil {
		t.Fatal(err)
	}
	ab.away.Store(true)
	waited := make(chan error, 1)
	go func() {
		_, err := cl.WaitFrom(ctx, st)
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("the wait ended while the bus was away: %v", err)
	case <-time.After(8 * time.Second):
	}
	ab.away.Store(false)
	// Back: the coordinator answers that the job runs (no runtime takes
	// it), so the wait goes on.
	select {
	case err := <-waited:
		t.Fatalf("the wait ended once the bus was back: %v", err)
	case <-time.After(3 * time.Second):
	}
}

// serveCoordinator starts a coordinator with cfg on b, serving until the
// test ends.
func serveCoordinator(t *testing.T, ctx context.Context, b bus.Bus, cfg coordinator.Config) {
	t.Helper()
	c, err := coordinator.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Serve(ctx); err != nil {
		t.Fatal(err)
	}
}
