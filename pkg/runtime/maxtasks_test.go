package runtime_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// A runtime with MaxTasks (an OpenWhisk activation) runs every task it
// took: the bus closes its channel once it has handed over the last one,
// and the tasks still waiting in the runtime's buffer are run, not handed
// back.
func TestMaxTasksRunsEveryTaskTaken(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator"})
	co, err := coordinator.New(cb, coordinator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime"})
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

// Queues splits a pool between runtimes that pull only its reducers and
// runtimes that pull only its tasks (how OpenWhisk activations run a
// map-reduce job): the reducer's runtime, with MaxTasks 1, is not stopped
// when its one reducer is delivered but runs it until the maps, run by
// the others, are all in; the map runtimes never take the reducer.
func TestQueuesReducerApart(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator"})
	co, err := coordinator.New(cb, coordinator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMapReduce, Function: "add", Iterdata: wire.Value(`[1,2,3,4]`),
		ExtraParams: wire.Value(`{"y":1}`), ReduceFunction: "sum", ReduceMode: wire.ReduceStreaming})
	if err != nil {
		t.Fatal(err)
	}
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime"})
	type result struct {
		sum runtime.Summary
		err error
	}
	reduced := make(chan result, 1)
	red, err := runtime.New(rb, runtime.Config{Slots: 1, MaxTasks: 1, Idle: 5 * time.Second, Queues: runtime.QueuesReduce, WorkerID: "reducer"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		s, err := red.Run(ctx)
		reduced <- result{s, err}
	}()
	// Two map runtimes, one after the other, two maps each.
	for i := range 2 {
		rt, err := runtime.New(rb, runtime.Config{Slots: 1, MaxTasks: 2, Idle: 2 * time.Second, Queues: runtime.QueuesTasks})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := rt.Run(ctx)
		if err != nil || sum.Tasks != 2 {
			t.Fatalf("map runtime %d ran %d tasks (%v), want 2 maps", i, sum.Tasks, err)
		}
	}
	r := <-reduced
	if r.err != nil || r.sum.Tasks != 1 {
		t.Fatalf("the reducer's runtime ran %d tasks (%v), want its reducer", r.sum.Tasks, r.err)
	}
	st, err := co.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Retried != 0 {
		t.Fatalf("job: %+v, %v", st, err)
	}
	if res, err := co.Results(id, 0, 0, 1<<20); err != nil || fmt.Sprintf("%s", res.Results) != "[14]" {
		t.Fatalf("result %s, %v; want [14]", res.Results, err)
	}
}
