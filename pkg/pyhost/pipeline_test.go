package pyhost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// pipePy's functions see whether another request waits in the
// interpreter's request pipe (fd 3) while they run: with calls pipelined,
// the host sends a slot's next call before the one running there ends.
const pipePy = `
import os, select, sys, time

def wait_queued(flag, then=""):
    """Touches flag, waits (at most 10 s) until a request is queued behind
    this call, then does what then says; raises if none came."""
    open(flag, "w").close()
    end = time.time() + 10
    while time.time() < end:
        if select.select([3], [], [], 0.01)[0]:
            break
    else:
        raise RuntimeError("no request was queued behind this call")
    print("running wait_queued", flush=True)
    if then == "exit":
        os._exit(3)
    if then.startswith("wait:"):
        # Wait for a file (the test's go-ahead), at most 30 s.
        path = then[5:]
        end = time.time() + 30
        while not os.path.exists(path) and time.time() < end:
            time.sleep(0.005)
    return os.getpid()

def mark(path, x):
    """Appends x to path (one line a run), prints it, returns [x, pid]."""
    with open(path, "a") as f:
        f.write("%s\n" % x)
    print("out of", x)
    return [x, os.getpid()]

def fail(x):
    print("failing", x, file=sys.stderr)
    raise ValueError("failed %s" % x)
`

func pipeModules(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipe.py"), []byte(pipePy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitFile waits for path to exist.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type outcome struct {
	res string
	err error
	log string
	dur time.Duration
}

// goCall runs c on h in a goroutine; its outcome arrives on the channel.
func goCall(ctx context.Context, h *Host, c *fn.Call) <-chan outcome {
	ch := make(chan outcome, 1)
	var log testenv.Buffer
	c.Log = &log
	go func() {
		start := time.Now()
		v, err := h.Call(ctx, c)
		ch <- outcome{res: string(v), err: err, log: log.String(), dur: time.Since(start)}
	}()
	return ch
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// A call on a slot whose interpreter is busy is sent to it at once, not
// after the running call's reply (so a slot costs no round trip a call),
// and each call still gets its own result, error and output.
func TestCallsPipelineWhileOneRuns(t *testing.T) {
	h, dir := newHost(t), pipeModules(t)
	ctx := context.Background()
	flag, runs := filepath.Join(dir, "started"), filepath.Join(dir, "runs")
	first := goCall(ctx, h, &fn.Call{Ref: "pipe:wait_queued", Args: vals(t, flag), ModulesDir: dir})
	waitFile(t, flag)
	ok1 := goCall(ctx, h, &fn.Call{Ref: "pipe:mark", Args: vals(t, runs, "b"), ModulesDir: dir})
	bad := goCall(ctx, h, &fn.Call{Ref: "pipe:fail", Args: vals(t, "c"), ModulesDir: dir})

	o := <-first
	if o.err != nil {
		t.Fatalf("the first call saw no request queued behind it: %v", o.err)
	}
	if o.log != "running wait_queued\n" {
		t.Errorf("first call's log = %q", o.log)
	}
	pid := o.res
	o = <-ok1
	if o.err != nil {
		t.Fatal(o.err)
	}
	var got []any
	_ = json.Unmarshal([]byte(o.res), &got)
	if len(got) != 2 || got[0] != "b" || jsonNum(got[1]) != pid {
		t.Errorf("mark = %s, want [\"b\", %s] (the same interpreter)", o.res, pid)
	}
	if o.log != "out of b\n" {
		t.Errorf("mark's log = %q, want only its own output", o.log)
	}
	o = <-bad
	te := taskErr(t, o.err, wire.ErrUser)
	if te.Type != "ValueError" || te.Message != "failed c" || !strings.Contains(te.Stack, "in fail") {
		t.Errorf("fail: got %+v", te)
	}
	if o.log != "failing c\n" {
		t.Errorf("fail's log = %q, want only its own output", o.log)
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("%d restarts", n)
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// An interpreter that dies with calls queued behind the running one fails
// only the running call; the queued ones never started there and run
// once, in a fresh interpreter.
func TestPipelineCrashRerunsOnlyQueued(t *testing.T) {
	h, dir := newHost(t), pipeModules(t)
	ctx := context.Background()
	flag, runs := filepath.Join(dir, "started"), filepath.Join(dir, "runs")
	first := goCall(ctx, h, &fn.Call{Ref: "pipe:wait_queued", Args: vals(t, flag, "exit"), ModulesDir: dir})
	waitFile(t, flag)
	var queued []<-chan outcome
	for _, x := range []string{"b", "c", "d"} {
		queued = append(queued, goCall(ctx, h, &fn.Call{Ref: "pipe:mark", Args: vals(t, runs, x), ModulesDir: dir}))
	}
	o := <-first
	te := taskErr(t, o.err, wire.ErrUser)
	if te.Type != "HostExit" || !te.Retryable {
		t.Errorf("crashed call: got %+v, want a retryable HostExit", te)
	}
	for i, ch := range queued {
		o := <-ch
		if o.err != nil {
			t.Errorf("queued call %d: %v", i, o.err)
			continue
		}
		if want := "out of " + string(rune('b'+i)) + "\n"; o.log != want {
			t.Errorf("queued call %d: log %q, want %q", i, o.log, want)
		}
	}
	got := lines(t, runs)
	sort.Strings(got)
	if strings.Join(got, ",") != "b,c,d" {
		t.Errorf("runs of the queued calls: %v, want each once: b,c,d", got)
	}
	if n := h.Restarts(); n != 1 {
		t.Errorf("Restarts() = %d, want 1", n)
	}
}

// A queued call whose context ends returns at once and never runs; the
// call running ahead of it is not disturbed, and a call queued behind it
// still runs.
func TestPipelineQueuedCallCancelled(t *testing.T) {
	h, dir := newHost(t), pipeModules(t)
	bg := context.Background()
	flag, goAhead, runs := filepath.Join(dir, "started"), filepath.Join(dir, "go"), filepath.Join(dir, "runs")
	first := goCall(bg, h, &fn.Call{Ref: "pipe:wait_queued", Args: vals(t, flag, "wait:"+goAhead), ModulesDir: dir})
	waitFile(t, flag)
	ctx, cancel := context.WithCancel(bg)
	doomed := goCall(ctx, h, &fn.Call{Ref: "pipe:mark", Args: vals(t, runs, "cancelled"), ModulesDir: dir})
	tctx, tcancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer tcancel()
	expired := goCall(tctx, h, &fn.Call{Ref: "pipe:mark", Args: vals(t, runs, "expired"), ModulesDir: dir})
	after := goCall(bg, h, &fn.Call{Ref: "pipe:mark", Args: vals(t, runs, "after"), ModulesDir: dir})
	cancel()
	o := <-doomed
	taskErr(t, o.err, wire.ErrCancelled)
	if o.dur > 5*time.Second {
		t.Errorf("the cancelled call returned after %v", o.dur)
	}
	o = <-expired
	taskErr(t, o.err, wire.ErrTimeout)
	if err := os.WriteFile(goAhead, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o = <-first
	if o.err != nil {
		t.Fatalf("the running call was disturbed by a queued call's end: %v", o.err)
	}
	o = <-after
	if o.err != nil {
		t.Fatalf("the call queued behind the cancelled ones: %v", o.err)
	}
	if got := lines(t, runs); strings.Join(got, ",") != "after" {
		t.Errorf("runs: %v, want only after (cancelled and expired calls must not run)", got)
	}
}

// The running call's deadline kills its interpreter; the calls queued
// behind it run in a fresh one.
func TestPipelineRunningCallTimeout(t *testing.T) {
	h, dir := newHost(t), pipeModules(t)
	bg := context.Background()
	flag, never, runs := filepath.Join(dir, "started"), filepath.Join(dir, "never"), filepath.Join(dir, "runs")
	ctx, cancel := context.WithTimeout(bg, 20*time.Second)
	defer cancel()
	first := goCall(ctx, h, &fn.Call{Ref: "pipe:wait_queued", Args: vals(t, flag, "wait:"+never), ModulesDir: dir})
	waitFile(t, flag)
	queued := goCall(bg, h, &fn.Call{Ref: "pipe:mark", Args: vals(t, runs, "q"), ModulesDir: dir})
	// The queued call is in the pipe (wait_queued saw it) once it prints.
	deadline := time.Now().Add(20 * time.Second)
	for h.slotQueued(0) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	o := <-first
	taskErr(t, o.err, wire.ErrCancelled)
	o = <-queued
	if o.err != nil {
		t.Fatalf("queued call: %v", o.err)
	}
	if got := lines(t, runs); strings.Join(got, ",") != "q" {
		t.Errorf("runs: %v, want q once", got)
	}
}

// A skip notice may reach the interpreter after the call it names has
// started or ended (the caller gave up just as it came up): the
// interpreter ignores it and serves the next calls.
func TestLateSkipNoticeIgnored(t *testing.T) {
	h, dir := newHost(t), modules(t)
	before := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: dir})
	p := h.slots[0].cur.Load()
	p.wmu.Lock()
	err := p.writeFrame([]byte(`{"op":"skip","id":1}`))
	p.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// Let the notice arrive alone, as it does when it comes late (this
	// pause provokes the case; the test passes with any timing).
	time.Sleep(50 * time.Millisecond)
	if after := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: dir}); after != before {
		t.Errorf("the interpreter changed (%s, then %s) after a late skip notice", before, after)
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("%d restarts", n)
	}
}

// Prestart starts the slots' interpreters ahead of calls; the first calls
// use them (moving them to the calls' modules), without a restart.
func TestPrestart(t *testing.T) {
	h, dir := newHost(t), modules(t)
	h.Prestart(context.Background(), 2)
	for slot := 0; slot < 2; slot++ {
		p := h.slots[slot].cur.Load()
		if p == nil || p.exitedNow() {
			t.Fatalf("slot %d has no interpreter after Prestart", slot)
		}
		got := mustCall(t, h, &fn.Call{Ref: "funcs:pid", Slot: slot, ModulesDir: dir})
		if want := fmt.Sprint(p.pid); got != want {
			t.Errorf("slot %d: the call ran in interpreter %s, not the one started ahead (%s)", slot, got, want)
		}
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("%d restarts", n)
	}
	h.Close()
	h.Prestart(context.Background(), 3) // after Close: starts nothing
	if s := h.slots[2]; s != nil {
		t.Errorf("Prestart after Close made slot 2")
	}
}

// The interpreter found on PATH may be a wrapper script (a pyenv or asdf
// shim, slow to start): the host runs the interpreter it execs. A binary
// is run as named (a venv's python, a link to one).
func TestExecutable(t *testing.T) {
	py := findPython(t)
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatal(err)
	}
	real := strings.TrimSpace(string(out))
	dir := t.TempDir()
	shim := filepath.Join(dir, "python3")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\nexec "+real+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "linked-python")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ python, want string }{{shim, real}, {real, real}, {link, link}} {
		h, err := New(Config{Python: c.python, ScriptDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Executable(); got != c.want {
			t.Errorf("Executable() of %s = %s, want %s", c.python, got, c.want)
		}
		h.Close()
	}
}
