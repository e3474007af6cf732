package pyhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/fnproc"
	"github.com/skeinrun/skein/pkg/wire"
)

// findPython returns the interpreter the tests use: $SKEIN_TEST_PYTHON,
// else python3 on PATH; without either it fails under CI and skips
// elsewhere.
func findPython(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(testenv.Python); p != "" {
		return p
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	return testenv.Require(t, testenv.Python)
}

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newHost(t testing.TB) *Host {
	t.Helper()
	h, err := New(Config{
		Python:    findPython(t),
		ScriptDir: t.TempDir(),
		Logger:    slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

const funcsPy = `
import os, sys, time

calls = 0

def add(x, y=0):
    return x + y

def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}

def count():
    global calls
    calls += 1
    return calls

def boom(msg):
    raise ValueError("bad value: " + msg)

class Custom(Exception):
    pass

def custom():
    raise Custom("mine")

def chatty(x):
    print("hello from python", x)
    print("to stderr", file=sys.stderr)
    sys.stdout.write("\x00\x00\x00\x05{junk")
    os.write(1, b"raw fd write\n")
    return x * 2

def nap(seconds):
    time.sleep(seconds)
    return "woke"

def span(seconds):
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]

def pid():
    return os.getpid()

def hog(mb):
    b = bytearray(mb * 1024 * 1024)
    return len(b)

def env(name):
    return os.environ.get(name)

def chunk(obj):
    data = obj.data_stream.read()
    return {"bucket": obj.bucket, "key": obj.key, "part": obj.part, "parts": obj.parts,
            "start": obj.start, "end": obj.end, "size": obj.size, "url": obj.url,
            "bytes": len(data), "words": len(data.split())}

def lines(obj):
    return sum(1 for _ in obj.data_stream)

def not_json():
    return {1, 2}
`

func modules(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "funcs.py"), []byte(funcsPy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func vals(t testing.TB, xs ...any) []wire.Value {
	out := make([]wire.Value, len(xs))
	for i, x := range xs {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func call(t testing.TB, h *Host, c *fn.Call) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := h.Call(ctx, c)
	return string(v), err
}

func mustCall(t testing.TB, h *Host, c *fn.Call) string {
	t.Helper()
	v, err := call(t, h, c)
	if err != nil {
		t.Fatalf("%s: %v", c.Ref, err)
	}
	return v
}

func taskErr(t *testing.T, err error, kind wire.ErrorKind) *wire.TaskError {
	t.Helper()
	var te *wire.TaskError
	if !errors.As(err, &te) {
		t.Fatalf("got %v (%T), want a *wire.TaskError of kind %s", err, err, kind)
	}
	if te.Kind != kind {
		t.Fatalf("got kind %q (%v), want %q; stack:\n%s", te.Kind, te, kind, te.Stack)
	}
	return te
}

func TestArgs(t *testing.T) {
	h, dir := newHost(t), modules(t)
	kw := func(k string, v any) map[string]wire.Value { return map[string]wire.Value{k: vals(t, v)[0]} }
	for _, tc := range []struct {
		ref    string
		args   []wire.Value
		kwargs map[string]wire.Value
		want   string
	}{
		{"funcs:add", vals(t, 1, 2), nil, "3"},
		{"funcs.add", vals(t, 1), kw("y", 41), "42"},
		{"funcs:add", nil, map[string]wire.Value{"x": vals(t, "a")[0], "y": vals(t, "b")[0]}, `"ab"`},
		{"funcs:add", vals(t, 1.5), nil, "1.5"},
		{"funcs:echo", vals(t, []int{1, 2}, "s"), kw("k", map[string]any{"n": nil}), `{"args":[[1,2],"s"],"kwargs":{"k":{"n":null}}}`},
		{"funcs:echo", nil, nil, `{"args":[],"kwargs":{}}`},
	} {
		got := mustCall(t, h, &fn.Call{Ref: tc.ref, Args: tc.args, Kwargs: tc.kwargs, ModulesDir: dir})
		if got != tc.want {
			t.Errorf("%s(%s, %v) = %s, want %s", tc.ref, tc.args, tc.kwargs, got, tc.want)
		}
	}
}

func TestImportOnceAndSlots(t *testing.T) {
	h, dir := newHost(t), modules(t)
	for i := 1; i <= 3; i++ {
		if got := mustCall(t, h, &fn.Call{Ref: "funcs:count", ModulesDir: dir}); got != fmt.Sprint(i) {
			t.Fatalf("call %d on slot 0: count() = %s, want %d (module re-imported?)", i, got, i)
		}
	}
	// Another slot has its own interpreter.
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:count", Slot: 1, ModulesDir: dir}); got != "1" {
		t.Fatalf("slot 1: count() = %s, want 1", got)
	}
	p0 := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: dir})
	p1 := mustCall(t, h, &fn.Call{Ref: "funcs:pid", Slot: 1, ModulesDir: dir})
	if p0 == p1 {
		t.Fatalf("slots 0 and 1 share interpreter %s", p0)
	}
	// Slots run at the same time: their naps overlap.
	var wg sync.WaitGroup
	spans := make([][2]float64, 2)
	for s := 0; s < 2; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := mustCall(t, h, &fn.Call{Ref: "funcs:span", Slot: s, Args: vals(t, 0.3), ModulesDir: dir})
			if err := json.Unmarshal([]byte(got), &spans[s]); err != nil {
				t.Errorf("span = %s: %v", got, err)
			}
		}()
	}
	wg.Wait()
	if max(spans[0][0], spans[1][0]) >= min(spans[0][1], spans[1][1]) {
		t.Errorf("naps on slots 0 and 1 did not overlap: %v", spans)
	}
	// Another modules dir with another funcs.py replaces the interpreter
	// (TestModulesDirSwitch has the rest).
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "funcs.py"), []byte(funcsPy+"\n# another version\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:count", ModulesDir: other}); got != "1" {
		t.Fatalf("new modules dir: count() = %s, want 1", got)
	}
}

// TestModulesDirSwitch: an interpreter serves a call of another modules
// dir (another job's) when every module it imported is the same file
// there, so that a warm interpreter is not restarted per job; when one
// differs, or the new dir lacks it, the call runs in a fresh interpreter;
// a pickled callable of the same name but other bytes is loaded anew.
func TestModulesDirSwitch(t *testing.T) {
	h := newHost(t)
	write := func(dir, name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := modules(t)
	mustCall(t, h, &fn.Call{Ref: "funcs:count", ModulesDir: a})
	pid := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: a})

	// Same funcs.py, plus a module not imported before: the same
	// interpreter, the module state kept, the new module importable.
	b := modules(t)
	write(b, "extra.py", "def hello():\n    return 'hello from b'\n")
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:count", ModulesDir: b}); got != "2" {
		t.Errorf("same module in another dir: count() = %s, want 2 (same interpreter)", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "extra:hello", ModulesDir: b}); got != `"hello from b"` {
		t.Errorf("extra:hello = %s", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: b}); got != pid {
		t.Errorf("interpreter %s after the switch, want %s", got, pid)
	}
	// The working directory follows the modules dir.
	write(b, "cwd.py", "import os\ndef cwd():\n    return os.getcwd()\n")
	if got := mustCall(t, h, &fn.Call{Ref: "cwd:cwd", ModulesDir: b}); got != fmt.Sprintf("%q", b) {
		t.Errorf("cwd %s, want %q", got, b)
	}

	// extra.py of other bytes: a fresh interpreter.
	c := modules(t)
	write(c, "extra.py", "def hello():\n    return 'hello from c'\n")
	if got := mustCall(t, h, &fn.Call{Ref: "extra:hello", ModulesDir: c}); got != `"hello from c"` {
		t.Errorf("changed extra.py: extra:hello = %s, want c's", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: c}); got == pid {
		t.Errorf("interpreter %s kept though extra.py changed", got)
	}
	if n := h.Restarts(); n != 1 {
		t.Errorf("%d restarts, want 1", n)
	}

	// No modules dir: a module imported from one is missing there.
	if got := mustCall(t, h, &fn.Call{Ref: "os:getcwd"}); got == fmt.Sprintf("%q", c) {
		t.Errorf("call without modules still in %s", got)
	}
	if n := h.Restarts(); n != 2 {
		t.Errorf("%d restarts, want 2", n)
	}
}

func TestException(t *testing.T) {
	h, dir := newHost(t), modules(t)
	_, err := call(t, h, &fn.Call{Ref: "funcs:boom", Args: vals(t, "x"), ModulesDir: dir})
	te := taskErr(t, err, wire.ErrUser)
	if te.Type != "ValueError" || te.Message != "bad value: x" || !te.Retryable {
		t.Errorf("got %+v, want a retryable ValueError 'bad value: x'", te)
	}
	for _, want := range []string{"Traceback (most recent call last)", "funcs.py", "in boom", `raise ValueError("bad value: " + msg)`, "ValueError: bad value: x"} {
		if !strings.Contains(te.Stack, want) {
			t.Errorf("traceback lacks %q:\n%s", want, te.Stack)
		}
	}
	if strings.Contains(te.Stack, "host-") {
		t.Errorf("traceback shows the host's own frames:\n%s", te.Stack)
	}
	_, err = call(t, h, &fn.Call{Ref: "funcs:custom", ModulesDir: dir})
	if te := taskErr(t, err, wire.ErrUser); te.Type != "funcs.Custom" || te.Message != "mine" {
		t.Errorf("custom exception: got %+v", te)
	}
	_, err = call(t, h, &fn.Call{Ref: "funcs:add", Args: vals(t, 1, 2, 3), ModulesDir: dir})
	if te := taskErr(t, err, wire.ErrBadInput); te.Retryable || !strings.Contains(te.Message, "too many positional") {
		t.Errorf("bad args: got %+v", te)
	}
	_, err = call(t, h, &fn.Call{Ref: "funcs:missing", ModulesDir: dir})
	taskErr(t, err, wire.ErrUnknownFn)
	_, err = call(t, h, &fn.Call{Ref: "nosuchmodule:f", ModulesDir: dir})
	taskErr(t, err, wire.ErrUnknownFn)
	_, err = call(t, h, &fn.Call{Ref: "funcs:not_json", ModulesDir: dir})
	if te := taskErr(t, err, wire.ErrUser); te.Retryable || !strings.Contains(te.Message, "not JSON serializable") {
		t.Errorf("non-JSON result: got %+v", te)
	}
	// The interpreter survived all of that.
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:count", ModulesDir: dir}); got != "1" {
		t.Errorf("count() after errors = %s, want 1 (same interpreter)", got)
	}
}

func TestOutputCaptured(t *testing.T) {
	h, dir := newHost(t), modules(t)
	for i := 0; i < 3; i++ {
		var log bytes.Buffer
		got := mustCall(t, h, &fn.Call{Ref: "funcs:chatty", Args: vals(t, i), ModulesDir: dir, Log: &log})
		if got != fmt.Sprint(i*2) {
			t.Fatalf("chatty(%d) = %s", i, got)
		}
		for _, want := range []string{fmt.Sprintf("hello from python %d\n", i), "to stderr\n", "\x00\x00\x00\x05{junk", "raw fd write\n"} {
			if !strings.Contains(log.String(), want) {
				t.Errorf("call %d: log %q lacks %q", i, log.String(), want)
			}
		}
		if strings.Contains(log.String(), "skein-pyhost-sync") {
			t.Errorf("log shows the sync mark: %q", log.String())
		}
	}
}

func TestTimeout(t *testing.T) {
	h, dir := newHost(t), modules(t)
	before := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Call(ctx, &fn.Call{Ref: "funcs:nap", Args: vals(t, 30), ModulesDir: dir})
	te := taskErr(t, err, wire.ErrTimeout)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout took %v", d)
	}
	if !te.Retryable {
		t.Errorf("timeout is not retryable: %+v", te)
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("%d restarts counted before the slot's interpreter started again", n)
	}
	after := mustCall(t, h, &fn.Call{Ref: "funcs:pid", ModulesDir: dir})
	if after == before {
		t.Fatalf("interpreter %s survived the timeout", before)
	}
	if n := h.Restarts(); n != 1 {
		t.Errorf("Restarts() = %d after the interpreter killed at the deadline was started again, want 1", n)
	}
	var pid int
	_ = json.Unmarshal([]byte(before), &pid)
	if err := processAlive(pid); err == nil {
		t.Errorf("old interpreter %d still running", pid)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:add", Args: vals(t, 2, 2), ModulesDir: dir}); got != "4" {
		t.Errorf("add after timeout = %s", got)
	}
}

func processAlive(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return err
	}
	// A zombie is as good as dead.
	if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
		return errors.New("zombie")
	}
	return nil
}

func TestMemoryLimit(t *testing.T) {
	h, dir := newHost(t), modules(t)
	// Under the limit works.
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:hog", Args: vals(t, 16), MemoryMB: 96, ModulesDir: dir}); got != fmt.Sprint(16<<20) {
		t.Fatalf("hog(16) = %s", got)
	}
	_, err := call(t, h, &fn.Call{Ref: "funcs:hog", Args: vals(t, 128), MemoryMB: 96, ModulesDir: dir})
	te := taskErr(t, err, wire.ErrOOM)
	if !strings.Contains(te.Message, "96 MB") {
		t.Errorf("oom message %q does not name the limit", te.Message)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:add", Args: vals(t, 1, 1), MemoryMB: 96, ModulesDir: dir}); got != "2" {
		t.Errorf("add after oom = %s", got)
	}
	// Without a limit the same allocation succeeds.
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:hog", Args: vals(t, 128), ModulesDir: dir}); got != fmt.Sprint(128<<20) {
		t.Errorf("hog(128) without a limit = %s", got)
	}
}

func TestObj(t *testing.T) {
	h, dir := newHost(t), modules(t)
	var text strings.Builder
	for i := 0; text.Len() < 3<<20; i++ {
		fmt.Fprintf(&text, "line %d has five words\n", i)
	}
	data := text.String()
	o := wire.Object{URL: "local://b/k.txt", Store: "local", Bucket: "b", Key: "k.txt", Part: 2, Parts: 4, Start: 100, End: 100 + int64(len(data)), Size: 1 << 30}
	got := mustCall(t, h, &fn.Call{Ref: "funcs:chunk", ModulesDir: dir, Obj: &fn.Object{Object: o, Body: strings.NewReader(data)}})
	var r map[string]any
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"bucket": "b", "key": "k.txt", "part": 2.0, "parts": 4.0, "start": 100.0, "end": float64(o.End), "size": float64(1 << 30),
		"url": o.URL, "bytes": float64(len(data)), "words": float64(len(strings.Fields(data)))}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("obj %s = %v, want %v", k, r[k], v)
		}
	}
	got = mustCall(t, h, &fn.Call{Ref: "funcs:lines", ModulesDir: dir, Obj: &fn.Object{Object: o, Body: strings.NewReader(data)}})
	if want := fmt.Sprint(strings.Count(data, "\n")); got != want {
		t.Errorf("lines = %s, want %s", got, want)
	}
	// A failing body is an internal error, not a wrong result.
	_, err := call(t, h, &fn.Call{Ref: "funcs:chunk", ModulesDir: dir, Obj: &fn.Object{Object: o, Body: &failingReader{}}})
	taskErr(t, err, wire.ErrInternal)
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		return 0, errors.New("storage went away")
	}
	r.n++
	return copy(p, "some words "), nil
}

func TestEnv(t *testing.T) {
	h, dir := newHost(t), modules(t)
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:env", Args: vals(t, "SKEIN_X"), Env: map[string]string{"SKEIN_X": "1"}, ModulesDir: dir}); got != `"1"` {
		t.Errorf("env during the call = %s", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "funcs:env", Args: vals(t, "SKEIN_X"), ModulesDir: dir}); got != "null" {
		t.Errorf("env after the call = %s, want it unset again", got)
	}
}

func TestBadCalls(t *testing.T) {
	h := newHost(t)
	for _, c := range []*fn.Call{
		{Ref: ""}, {Ref: "nodots"}, {Ref: "a b:c"}, {Ref: "m:f", Slot: -1}, {Ref: "m:f", MemoryMB: -1}, {Ref: "m:f", ModulesDir: "rel"},
	} {
		_, err := h.Call(context.Background(), c)
		var te *wire.TaskError
		if !errors.As(err, &te) || te.Kind != wire.ErrBadInput {
			t.Errorf("%+v: got %v, want bad_input", c, err)
		}
	}
	if err := (Config{Env: []string{"NOEQUALS"}}).Validate(); err == nil || !strings.Contains(err.Error(), "Python") || !strings.Contains(err.Error(), "Env[0]") {
		t.Errorf("Validate = %v, want errors naming Python and Env[0]", err)
	}
	if _, err := New(Config{Python: "/nonexistent/python"}); err == nil {
		t.Error("New with a missing interpreter succeeded")
	}
}

func TestPartialSuffix(t *testing.T) {
	m := []byte("abc")
	for _, tc := range []struct {
		b    string
		want int
	}{{"", 0}, {"x", 0}, {"xa", 1}, {"xab", 2}, {"ab", 2}, {"abc", 0}, {"b", 0}} {
		if got := partialSuffix([]byte(tc.b), m); got != tc.want {
			t.Errorf("partialSuffix(%q) = %d, want %d", tc.b, got, tc.want)
		}
	}
}

// BenchmarkNoop measures a warm call of a Python no-op through the host.
func BenchmarkNoop(b *testing.B) {
	h, dir := newHost(b), modules(b)
	c := &fn.Call{Ref: "funcs:echo", ModulesDir: dir}
	mustCall(b, h, c)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Call(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
}

func TestClose(t *testing.T) {
	h, dir := newHost(t), modules(t)
	var pids []int
	for s := 0; s < 2; s++ {
		var pid int
		if err := json.Unmarshal([]byte(mustCall(t, h, &fn.Call{Ref: "funcs:pid", Slot: s, ModulesDir: dir})), &pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if processAlive(pid) == nil {
			t.Errorf("interpreter %d still running after Close", pid)
		}
	}
	_, err := h.Call(context.Background(), &fn.Call{Ref: "funcs:pid", ModulesDir: dir})
	taskErr(t, err, wire.ErrInternal)
}

const envPy = `import os

def environ():
    return dict(os.environ)

def uid():
    return [os.getuid(), os.getcwd()]
`

// TestCleanEnvironment: the interpreter sees none of the runtime's
// environment but the allowed variables and the call's own Env.
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("SKEIN_BUS", "nats://skein:bus-secret@nats:4222")
	t.Setenv("SKEIN_STORAGE_ACCESS_KEY", "access-secret")
	t.Setenv("OTHER_SECRET", "other-secret")
	h := newHost(t) // fnproc.Default(), made after the variables are set
	mods := t.TempDir()
	if err := os.WriteFile(filepath.Join(mods, "envdump.py"), []byte(envPy), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := h.Call(context.Background(), &fn.Call{Ref: "envdump:environ", ModulesDir: mods, Env: map[string]string{"JOB": "job-value"}})
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal(v, &env); err != nil {
		t.Fatal(err)
	}
	for k, val := range env {
		for _, bad := range []string{"bus-secret", "access-secret", "other-secret"} {
			if strings.Contains(val, bad) {
				t.Errorf("the interpreter sees %s=%s", k, val)
			}
		}
		if strings.HasPrefix(k, "SKEIN_") {
			t.Errorf("the interpreter sees %s", k)
		}
	}
	if env["JOB"] != "job-value" || env["PATH"] == "" {
		t.Errorf("the call's Env or PATH is missing: %v", env)
	}
}

// TestRunAs: with a setup for nobody (the runtime as root), the
// interpreter runs as nobody in its work directory, and reads its script
// and the shipped modules from the shared directory. As another user,
// it runs as that user.
func TestRunAs(t *testing.T) {
	runAs, want := "", os.Geteuid()
	if os.Geteuid() == 0 {
		runAs, want = "nobody", 65534
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	proc, err := fnproc.New(fnproc.Config{RunAs: runAs, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	mods := filepath.Join(dir, "mods")
	if proc.SharedDir() != "" {
		mods = filepath.Join(proc.SharedDir(), "mods")
	}
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mods, "envdump.py"), []byte(envPy), 0o644); err != nil {
		t.Fatal(err)
	}
	// A name, not findPython's path: the host looks it up as the user.
	h, err := New(Config{Python: "python3", Proc: proc, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	v, err := h.Call(context.Background(), &fn.Call{Ref: "envdump:uid", ModulesDir: mods})
	if err != nil {
		t.Fatal(err)
	}
	var got []any
	if err := json.Unmarshal(v, &got); err != nil || len(got) != 2 || got[0] != float64(want) || got[1] != mods {
		t.Fatalf("uid, cwd = %s (%v), want [%d, %q]", v, err, want, mods)
	}
}
