package openwhisk

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/backend/openwhisk/owtest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestStreamingReduce200: a 200-map streaming sum through the openwhisk
// backend (the coordinator program, the fake controller, "runtime
// action" containers) ends within twice the time of the same job with a
// barrier reducer. The coordinator dispatches each reducer an activation
// of its own (queue "reduce") and the map activations pull maps only, so
// no activation's task budget cuts a reducer off and none takes one it
// would have to hand back as it stops. The coordinator runs with
// --stall-after -1: a reducer cut off or handed back would never be run
// again and the job would hang until the test's bound (the streaming job
// used to take a minute, waiting for --stall-after); and no reducer is
// retried.
func TestStreamingReduce200(t *testing.T) {
	const N, batch = 200, 10
	bin := programs(t)
	busURL := fmt.Sprintf("%s?ns=owreduce-%d", testenv.Require(t, testenv.NATSURL), time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	containers := &testenv.Buffer{}
	ctl, err := owtest.Start(owtest.Config{APIKey: "u:k1", Command: []string{filepath.Join(bin, "runtime"), "action", "--log-level", "info"},
		MaxContainers: 8, ContainerOutput: containers, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	defer func() {
		if t.Failed() {
			t.Logf("containers:\n%s", containers.String())
		}
	}()
	startCoordinator(t, ctx, bin, busURL, ctl, "--ow-image", "skein/runtime:test", "--ow-batch", fmt.Sprint(batch),
		"--ow-idle", "300ms", "--ow-timeout-ms", "60000", "--stall-after", "-1s")
	b, err := dial.Open(ctx, busURL, dial.Options{Name: "test-client", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	iter := make([]int, N)
	for i := range iter {
		iter[i] = i
	}
	iterdata, _ := json.Marshal(iter)
	run := func(spec *wire.JobSpec, want string, within time.Duration) time.Duration {
		t.Helper()
		jctx, jcancel := context.WithTimeout(ctx, within)
		defer jcancel()
		start := time.Now()
		cl := client.New(b)
		mode := spec.Kind
		id, err := cl.Submit(jctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cl.Wait(jctx, id)
		elapsed := time.Since(start)
		if err != nil {
			st, _ = cl.Status(ctx, id)
			t.Fatalf("%s job: %v after %v (status %+v, controller %+v)", mode, err, elapsed, st, ctl.Stats())
		}
		res, err := cl.Result(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if string(res) != want || st.Retried != 0 {
			t.Fatalf("%s job: result %.100s, status %+v; want %.100s, no retry", mode, res, st, want)
		}
		if err := ctl.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		return elapsed
	}
	spec := func(mode wire.ReduceMode) *wire.JobSpec {
		return &wire.JobSpec{Kind: wire.JobMapReduce, Function: "add", Iterdata: iterdata, ExtraParams: wire.Value(`{"y":1}`),
			ReduceFunction: "sum", ReduceMode: mode}
	}
	want := fmt.Sprint(N * (N + 1) / 2)
	barrier := run(spec(wire.ReduceBarrier), want, 40*time.Second)
	streaming := run(spec(wire.ReduceStreaming), want, 40*time.Second)
	t.Logf("200 maps and a sum: barrier %v, streaming %v; controller %+v", barrier, streaming, ctl.Stats())
	if streaming > 2*barrier+time.Second {
		t.Fatalf("streaming took %v, more than twice the barrier job's %v", streaming, barrier)
	}
}
