package runtime_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
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

// Short Python calls are pipelined to each slot's interpreter (so a slot
// costs no round trip a call), long ones are not, and either way every
// task gets its own result and log.
func TestPythonCallsPipelineWhenShort(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipefn.py"), []byte(pipefnPy), 0o644); err != nil {
		t.Fatal(err)
	}
	host, err := pyhost.New(pyhost.Config{Python: py, ScriptDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	rb, err := srv.Connect(ctx, natsbus.Options{Name: "runtime"})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	rt, err := runtime.New(rb, runtime.Config{Slots: 2, Hosts: map[string]fn.Host{"py": host},
		Prepare: func(_ context.Context, _ *wire.Task, c *fn.Call) error { c.ModulesDir = dir; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	defer func() { stop(); <-done }()

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
