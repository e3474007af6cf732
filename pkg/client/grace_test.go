package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
)

// TestGraceWaitsForACoordinator: with CoordinatorGrace set, a request
// that finds no coordinator serving keeps asking for that long, so that a
// submit whose coordinator died after taking the job (its answer lost) is
// answered by the next one to start; without it, a request fails within
// seconds (ErrNoCoordinator).
func TestGraceWaitsForACoordinator(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "client"})

	// Without a grace: no coordinator is a clear error within seconds.
	start := time.Now()
	if _, err := client.New(cb).Status(ctx, "j1"); !errors.Is(err, client.ErrNoCoordinator) || time.Since(start) > 10*time.Second {
		t.Fatalf("no coordinator, no grace: %v after %v, want ErrNoCoordinator within seconds", err, time.Since(start))
	}

	// With one, a request whose own deadline comes first still says
	// that no coordinator serves (a wait's liveness check counts on it).
	g := client.New(cb)
	g.CoordinatorGrace = 30 * time.Second
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := g.Status(sctx, "j1")
	scancel()
	if !errors.Is(err, client.ErrNoCoordinator) {
		t.Fatalf("grace 30s, a request of 2s, no coordinator: %v, want ErrNoCoordinator", err)
	}

	// With one: a coordinator that starts 10 s later (longer than the
	// few seconds a request asks without one) answers.
	c := client.New(cb)
	c.CoordinatorGrace = 30 * time.Second
	go func() {
		time.Sleep(10 * time.Second)
		b, err := srv.Connect(ctx, natsbus.Options{Name: "coordinator"})
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { b.Close() })
		co, err := coordinator.New(b, coordinator.Config{})
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { co.Close() })
		if err := co.Serve(ctx); err != nil {
			t.Error(err)
		}
	}()
	_, err = c.Status(ctx, "j1")
	if !errors.Is(err, client.ErrUnknownJob) {
		t.Fatalf("with a grace of 30s and a coordinator after 10s: %v, want the coordinator's answer (unknown job)", err)
	}
}
