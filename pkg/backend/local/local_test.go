package local_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/backend"
	"github.com/skeinrun/skein/pkg/backend/local"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestLocalRunsJobs(t *testing.T) {
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coord", Logger: log})
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "rt", Logger: log})

	if _, err := local.Start(rb, runtime.Config{Slots: -1}); err == nil {
		t.Fatal("Start with -1 slots succeeded")
	}
	be, err := local.Start(rb, runtime.Config{Slots: 3, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	co, err := coordinator.New(cb, coordinator.Config{Logger: log, Hooks: coordinator.Hooks{
		Published: func(ctx context.Context, spec *wire.JobSpec, tasks int) error {
			return be.Dispatch(ctx, backend.Job{ID: spec.ID, Pool: spec.Pool, Tasks: tasks})
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: wire.Value(`[0.05,0.05,0.05,0.05,0.05,0.05]`)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := co.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Done != 6 {
		t.Fatalf("job: %v %+v", err, st)
	}
	// A job on a pool the local workers do not pull fails at once.
	id, err = co.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Function: "add", Data: wire.Value(`{"x":1,"y":2}`), Pool: "gpu"})
	if err != nil {
		t.Fatal(err)
	}
	st, err = co.Wait(ctx, id)
	if err != nil || st.State != wire.StateFailed || st.Error == nil || !strings.Contains(st.Error.Message, `pool "gpu"`) {
		t.Fatalf("job on another pool: %v %+v %v", err, st, st.Error)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if sum := be.Summary(); sum.Tasks != 6 {
		t.Fatalf("the local workers ran %d tasks, want 6", sum.Tasks)
	}
	err = be.Dispatch(ctx, backend.Job{ID: "j", Pool: "default", Tasks: 1})
	if !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Dispatch after Close: %v", err)
	}
}
