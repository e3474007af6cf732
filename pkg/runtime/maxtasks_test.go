package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// A runtime with MaxTasks (an OpenWhisk activation) runs every task it
// took: the bus closes its channel once it has handed over the last one,
// and the tasks still waiting in the runtime's buffer are run, not handed
// back.
func TestMaxTasksRunsEveryTaskTaken(t *testing.T) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb, err := srv.Connect(ctx, natsbus.Options{Name: "coordinator"})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	co, err := coordinator.New(cb, coordinator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := srv.Connect(ctx, natsbus.Options{Name: "runtime"})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	rt, err := runtime.New(rb, runtime.Config{Slots: 1, MaxTasks: 3, Idle: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := rt.Run(ctx)
	if err != nil || sum.Tasks != 3 {
		t.Fatalf("the runtime ran %d tasks (%v), want all 3 it took", sum.Tasks, err)
	}
	st, err := co.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Done != 3 {
		t.Fatalf("job: %+v, %v", st, err)
	}
}
