package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/pyhost"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// pipefn's functions return their argument and whether another request
// waited in the interpreter's request pipe (fd 3) as they ended: with a
// slot's short calls pipelined, some do.
const pipefnPy = `
import os, select, sys, time

def queued():
    # The host's calls read and not started, or bytes still in its pipe.
    return bool(sys.modules["__main__"]._pending) or bool(select.select([3], [], [], 0)[0])

def fast(x):
    return [x, queued()]

def crashy(x, dir, crash):
    """Records x's run; the first call from x == crash on that has calls
    queued behind it kills its interpreter, once in all interpreters, and
    names itself in dir/crashed."""
    q = queued()
    with open(os.path.join(dir, "runs-%d" % (x % 2)), "a") as f:
        f.write("%d\n" % x)
    if x >= crash and q:
        # Both slots' interpreters may get here at once: only the one
        # that creates the marker crashes.
        try:
            fd = os.open(os.path.join(dir, "crashed"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return [x, q]
        os.write(fd, b"%d" % x)
        os.close(fd)
        os._exit(3)
    return [x, q]

def slow(x):
    time.sleep(0.03)
    return [x, queued()]
`

func python(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(testenv.Python); p != "" {
		return p
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	return testenv.Require(t, testenv.Python)
}

// pyRuntime runs a runtime of 2 slots with a Python host whose calls see
// dir (holding pipefn.py) as their shipped modules, and a coordinator.
func pyRuntime(t *testing.T, ctx context.Context) (*coordinator.Coordinator, string) {
	t.Helper()
	py := python(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipefn.py"), []byte(pipefnPy), 0o644); err != nil {
		t.Fatal(err)
	}
	host, err := pyhost.New(pyhost.Config{Python: py, ScriptDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	srv := natstest.Server(t)
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator"})
	co, err := coordinator.New(cb, coordinator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { co.Close() })
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime"})
	rt, err := runtime.New(rb, runtime.Config{Slots: 2, Hosts: map[string]fn.Host{"py": host},
		Prepare: func(_ context.Context, _ *wire.Task, c *fn.Call) error { c.ModulesDir = dir; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	return co, dir
}

// Short Python calls are pipelined to each slot's interpreter (so a slot
// costs no round trip a call), long ones are not, and either way every
// task gets its own result.
func TestPythonCallsPipelineWhenShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	co, _ := pyRuntime(t, ctx)
	for _, c := range []struct {
		fn        string
		n         int
		pipelined bool
	}{{"fast", 2000, true}, {"slow", 16, true}, {"slow", 24, false}} {
		items := make([]int, c.n)
		for i := range items {
			items[i] = i
		}
		iter, _ := json.Marshal(items)
		id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "py:pipefn:" + c.fn, Iterdata: iter})
		if err != nil {
			t.Fatal(err)
		}
		st, err := co.Wait(ctx, id)
		if err != nil || st.State != wire.StateDone || st.Done != c.n {
			t.Fatalf("%s: job %+v, %v", c.fn, st, err)
		}
		res, err := co.Results(id, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		queued := 0
		for i, v := range res.Results {
			var got [2]any
			if err := json.Unmarshal(v, &got); err != nil || got[0] != float64(i) {
				t.Fatalf("%s: result %d = %s", c.fn, i, v)
			}
			if got[1] == true {
				queued++
			}
		}
		t.Logf("%s: %d of %d calls had another queued behind them", c.fn, queued, c.n)
		if c.pipelined && c.fn == "fast" && queued == 0 {
			t.Errorf("%s: no call had another queued behind it: a slot's short calls are not pipelined", c.fn)
		}
		// The first slow job follows fast calls: a slot may have sent a
		// few behind its first slow call before it saw one. The second
		// one runs on slots that have seen slow calls.
		if !c.pipelined && queued > 0 {
			t.Errorf("%s: %d calls of 30 ms had another queued behind them: long calls piled on a slot", c.fn, queued)
		}
	}
}

// An interpreter that dies with calls pipelined behind the one running
// costs only that task an attempt: every task ends done, each ran once
// but the one that crashed (twice), and nothing is reported failed.
func TestPythonCrashInPipelineRetriesOnlyItsTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	co, dir := pyRuntime(t, ctx)
	const n, crash = 3000, 2000
	items := make([][]any, n)
	for i := range items {
		items[i] = []any{i, dir, crash}
	}
	iter, _ := json.Marshal(items)
	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "py:pipefn:crashy", Iterdata: iter, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	st, err := co.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Done != n || st.Failed != 0 {
		t.Fatalf("job %+v, %v", st, err)
	}
	res, err := co.Results(id, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Results {
		var got [2]any
		if err := json.Unmarshal(v, &got); err != nil || got[0] != float64(i) {
			t.Fatalf("result %d = %s", i, v)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "crashed"))
	if err != nil {
		t.Fatalf("no call crashed with calls queued behind it: %v", err)
	}
	var crashed int
	_, _ = fmt.Sscan(string(b), &crashed)
	runs := map[int]int{}
	for _, f := range []string{"runs-0", "runs-1"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		for _, l := range strings.Fields(string(b)) {
			var x int
			_, _ = fmt.Sscan(l, &x)
			runs[x]++
		}
	}
	for i := 0; i < n; i++ {
		want := 1
		if i == crashed {
			want = 2
		}
		if runs[i] != want {
			t.Errorf("task %d ran %d times, want %d", i, runs[i], want)
		}
	}
}
