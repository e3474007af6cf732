package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestPublishedHook checks when the coordinator calls Hooks.Published:
// once with the map tasks after publishing, once more per re-published
// task (a retry), and that a hook error fails the job.
func TestPublishedHook(t *testing.T) {
	log := logger(t)
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coord", Logger: log})
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "rt", Logger: log})

	var mu sync.Mutex
	calls := map[string][]int{}
	hook := func(ctx context.Context, spec *wire.JobSpec, tasks int) error {
		mu.Lock()
		calls[spec.ID] = append(calls[spec.ID], tasks)
		mu.Unlock()
		if spec.Function == "sleep" {
			return errors.New("no runtime for you")
		}
		return nil
	}
	co, err := coordinator.New(cb, coordinator.Config{Logger: log, Hooks: coordinator.Hooks{Published: hook}})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	rt, err := runtime.New(rb, runtime.Config{Slots: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rstop := context.WithCancel(ctx)
	rdone := make(chan struct{})
	go func() { defer close(rdone); _, _ = rt.Run(rctx) }()
	defer func() { rstop(); <-rdone }()

	submit := func(spec *wire.JobSpec) (string, wire.JobStatus) {
		t.Helper()
		id, err := co.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		st, err := co.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return id, st
	}
	mapID, st := submit(&wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[1,2,3,4,5]`), ExtraParams: wire.Value(`{"y":1}`)})
	if st.State != wire.StateDone {
		t.Fatalf("map: %+v", st)
	}
	failID, st := submit(&wire.JobSpec{Kind: wire.JobCall, Function: "fail", Data: wire.Value(`{}`), Retries: 1})
	if st.State != wire.StateFailed || st.Retried != 1 {
		t.Fatalf("failing call with one retry: %+v", st)
	}
	// Tasks that outlast the hook: the job ends failed, not done.
	hookID, st := submit(&wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: wire.Value(`[5,5]`)})
	if st.State != wire.StateFailed || st.Error == nil || !strings.Contains(st.Error.Message, "compute backend: no runtime for you") {
		t.Fatalf("job whose backend failed: %+v (error %v)", st, st.Error)
	}
	// A failure of the job, not of one of its tasks, names no task: it
	// was reported as task 0's, and a results stream gave task 0 the
	// job's error.
	if st.FailedTask != -1 {
		t.Fatalf("job whose backend failed: FailedTask %d, want -1 (no task)", st.FailedTask)
	}
	if msg := (&client.JobError{Status: st}).Error(); strings.Contains(msg, "task") {
		t.Fatalf("job whose backend failed: error %q names a task", msg)
	}
	// The hook of a retry is called once the retry is on the queue, and
	// a loaded machine can run and end the job before that: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for id, want := range map[string]string{mapID: "[5]", failID: "[1 1]", hookID: "[2]"} {
		for {
			mu.Lock()
			got := fmt.Sprint(calls[id])
			mu.Unlock()
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("job %s: Published called with %s, want %s", id, got, want)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
