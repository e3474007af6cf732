package coordinator_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestAPIAroundAStuckCoordinator: a coordinator that stops answering
// without leaving the bus (stopped with SIGSTOP, frozen with its virtual
// machine, or cut off behind a connection the broker still holds open)
// keeps its share of the API's requests. A client does not wait a whole
// request timeout for it: a request not answered within HedgeAfter is
// sent again beside the first, and a live coordinator answers it. Found
// by trying it: with one of two coordinators stopped, one-task submits
// took 15 to more than 60 s, each request sent again after 15 s landing
// on the stopped one half the time.
//
// A coordinator that has joined its namespace (as `coordinator` does) and
// one that has not (embedded) both answer the copies: a submit's copy is a
// retry, which the one that had not joined used to answer never (it waited
// to read a job log it does not follow).
func TestAPIAroundAStuckCoordinator(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		for _, join := range []bool{true, false} {
			t.Run(map[bool]string{true: "joined", false: "standalone"}[join], func(t *testing.T) {
				aroundAStuckCoordinator(t, tb, join)
			})
		}
	})
}

func aroundAStuckCoordinator(t *testing.T, tb *testBus, join bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startCoordinator(t, tb.connect(t, "coordinator"), coordinator.Config{}, join)
	startRuntime(t, tb.connect(t, "runtime"), 2)

	// The stuck coordinator: it takes requests and never answers.
	stuck := tb.connect(t, "stuck")
	sctx, scancel := context.WithCancel(ctx)
	t.Cleanup(scancel)
	var took atomic.Int64
	for _, op := range []string{wire.APISubmit, wire.APIStatus, wire.APIResult, wire.APICancel} {
		if err := stuck.Serve(sctx, op, func(ctx context.Context, _ bus.Message) ([]byte, error) {
			took.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
	}

	c := client.New(tb.connect(t, "client"))
	c.Logger = busLogger(t)
	// Longer than the test: a request the stuck one took gets past it
	// only by being sent again beside it.
	c.RequestTimeout = 10 * time.Minute
	c.HedgeAfter = 200 * time.Millisecond
	for i := range 6 {
		start := time.Now()
		sub, err := c.SubmitStatus(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add",
			Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`)})
		if err != nil {
			t.Fatalf("job %d: submit: %v", i, err)
		}
		st, err := c.WaitFrom(ctx, sub)
		if err != nil || st.State != wire.StateDone {
			t.Fatalf("job %d: wait: %+v, %v", i, st, err)
		}
		res, err := c.Result(ctx, sub.ID)
		if err != nil || string(res) != "[2,3,4]" {
			t.Fatalf("job %d: result %s, %v; want [2,3,4]", i, res, err)
		}
		if st, err := c.Status(ctx, sub.ID); err != nil || st.State != wire.StateDone {
			t.Fatalf("job %d: status: %+v, %v", i, st, err)
		}
		t.Logf("job %d: %v, requests the stuck coordinator took so far: %d", i, time.Since(start).Round(time.Millisecond), took.Load())
	}
	if took.Load() == 0 {
		t.Fatal("the stuck coordinator took no request: the test did not test anything")
	}
}
