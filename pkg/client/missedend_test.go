package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestWaitTakesTheCoordinatorsWordForAMissedEnd: a wait whose
// subscription never brings the job's end record (on RabbitMQ, a broker
// back without its data starts its stream's offsets anew, and a submit
// that reconnected after the coordinator wrote the end resumes past it:
// CI on 9d3a806, TestRabbitMQBackWithoutItsData) ends once the
// coordinator has said at two checks in a row that the job ended, with the
// coordinator's status, instead of waiting for ever. Here the wait reads
// from a position the end record is not at.
func TestWaitTakesTheCoordinatorsWordForAMissedEnd(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator"})
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime"})
	co, err := coordinator.New(cb, coordinator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { co.Close() })
	if err := co.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(rb, runtime.Config{Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })

	c := client.New(cb)
	c.LivenessInterval = 200 * time.Millisecond
	var ended wire.JobStatus
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[1,2]`), ExtraParams: wire.Value(`{"y":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if ended, err = c.Status(ctx, id); err != nil {
			t.Fatal(err)
		}
		if ended.State.Terminal() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	missed := ended
	missed.State, missed.From = wire.StateRunning, ended.From+1_000_000 // where no end record is
	start := time.Now()
	got, err := c.WaitFrom(ctx, missed)
	if err != nil || got.State != wire.StateDone || got.ID != id {
		t.Fatalf("waiting past the end record: %+v, %v; want the coordinator's status, done", got, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the wait took %v, want about two checks (400 ms)", d)
	}
}
