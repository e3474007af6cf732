package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// A client waiting on a job rides out a moment with no coordinator on
// the bus (the only one restarting, or reconnecting after the broker's
// restart: its API comes back a few seconds after the broker does), and
// gets the job's end from the coordinator that takes it up. It used to
// give up after two failed checks, which came a second apart when the
// first one had waited for the bus to come back (a CI run of
// TestStreamAcrossBrokerRestart exited 5 so). A coordinator that never
// comes back is a clear error once the grace has passed.
func TestWaitRidesOutCoordinatorGap(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := func(name string) *natsbus.Bus {
		b := natstest.Connect(t, srv, natsbus.Options{Name: name})
		return b
	}
	cfg := coordinator.Config{Lease: time.Second}
	_, kill := joinCoordinator(t, connect("a"), cfg)
	startRuntime(t, connect("runtime"), 2)
	in, want := sleepValues("gap", 4, 1.5)

	cl := client.New(connect("client"))
	cl.LivenessInterval = 100 * time.Millisecond
	cl.CoordinatorGrace = time.Minute
	st, err := cl.SubmitStatus(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: in})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		end, err := cl.WaitFrom(ctx, st)
		if err == nil && end.State != wire.StateDone {
			err = errors.New("ended " + string(end.State))
		}
		ended <- err
	}()
	time.Sleep(200 * time.Millisecond)
	kill() // no coordinator for 12 s: every check finds nobody (a check
	// tries for up to 5 s before it counts as a miss)
	time.Sleep(12 * time.Second)
	select {
	case err := <-ended:
		t.Fatalf("the wait ended while no coordinator was on the bus: %v", err)
	default:
	}
	_, killB := joinCoordinator(t, connect("b"), cfg) // takes the job up from the log
	if err := <-ended; err != nil {
		t.Fatalf("wait across the coordinator gap: %v", err)
	}
	res, err := cl.Result(ctx, st.ID)
	if err != nil || string(res) != want {
		t.Fatalf("result %s, %v; want %s", res, err, want)
	}

	// Nobody comes back: the wait fails once the grace is over.
	st, err = cl.SubmitStatus(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: in})
	if err != nil {
		t.Fatal(err)
	}
	cl.CoordinatorGrace = time.Second
	go func() { _, err := cl.WaitFrom(ctx, st); ended <- err }()
	// A watch of the job ends with the same verdict, for its caller to
	// report without asking again.
	w, err := cl.WatchFrom(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	killB()
	select {
	case err := <-ended:
		if !errors.Is(err, client.ErrCoordinatorLost) {
			t.Fatalf("wait with no coordinator left: %v, want %v", err, client.ErrCoordinatorLost)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the wait went on 30 s after the last coordinator was gone")
	}
	var last wire.JobStatus
	for s := range w.C {
		last = s
	}
	if last.State.Terminal() || !errors.Is(w.Err(), client.ErrCoordinatorLost) {
		t.Fatalf("watch with no coordinator left: last status %s, Err %v; want a running job and %v", last.State, w.Err(), client.ErrCoordinatorLost)
	}
}
