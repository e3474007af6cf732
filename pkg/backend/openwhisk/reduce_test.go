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
// action" containers) ends within twice the time of the same 200 maps
// without a reducer (a barrier job takes at least that long). The
// activation that takes the streaming reducer runs it to its end rather
// than stopping at its task budget: the coordinator runs with
// --stall-after -1, so a reducer cut off and handed back would never be
// run again and the job would hang until the test's bound (it used to
// take a minute: the reducer waited for --stall-after); and the reducer
// ran once (no retry).
//
// The baseline is a map job, not a barrier map-reduce: a barrier reducer
// is enqueued just as the activations stop, and their limited consumers'
// last pull requests (natsbus consumeLimited) can take and hand it back
// more often than the queue's MaxDeliver allows, after which nobody ever
// gets it (a bus fault, seen here on the base code as well).
func TestStreamingReduce200(t *testing.T) {
	const N, batch = 200, 10
	bin := programs(t)
	busURL := fmt.Sprintf("%s?ns=owreduce-%d", testenv.Require(t, testenv.NATSURL), time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	containers := &lockedBuffer{}
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
	results := make([]int, N)
	for i := range results {
		results[i] = i + 1
	}
	mapsWant, _ := json.Marshal(results)
	maps := run(&wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: iterdata, ExtraParams: wire.Value(`{"y":1}`)},
		string(mapsWant), 40*time.Second)
	streaming := run(&wire.JobSpec{Kind: wire.JobMapReduce, Function: "add", Iterdata: iterdata, ExtraParams: wire.Value(`{"y":1}`),
		ReduceFunction: "sum", ReduceMode: wire.ReduceStreaming}, fmt.Sprint(N*(N+1)/2), 40*time.Second)
	t.Logf("200 maps %v; with a streaming sum %v; controller %+v", maps, streaming, ctl.Stats())
	if streaming > 2*maps+time.Second {
		t.Fatalf("streaming took %v, more than twice the maps' %v", streaming, maps)
	}
}
