package cmdhost

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
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/profile"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/fnproc"
	"github.com/skeinrun/skein/pkg/wire"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		argv []string
		out  Output
	}{
		{"wc -w", []string{"wc", "-w"}, OutputAuto},
		{"  wc\t-w \n", []string{"wc", "-w"}, OutputAuto},
		{`grep -c 'an error'`, []string{"grep", "-c", "an error"}, OutputAuto},
		{`sh -c 'tr a-z A-Z | wc -w'`, []string{"sh", "-c", "tr a-z A-Z | wc -w"}, OutputAuto},
		{`echo "a \"b\" \$c \x" ''`, []string{"echo", `a "b" $c \x`, ""}, OutputAuto},
		{`echo a\ b\'c`, []string{"echo", "a b'c"}, OutputAuto},
		{`echo it's'' "fine"x`, nil, ""}, // unterminated quote
		{`@text echo 42`, []string{"echo", "42"}, OutputText},
		{`@json @lines ls *.txt ~`, []string{"ls", "*.txt", "~"}, OutputLines},
		{`@xml ls`, nil, ""},
		{`@text`, nil, ""},
		{`wc -w | sort`, nil, ""},
		{`echo $HOME`, nil, ""},
		{`cat > f`, nil, ""},
		{`echo \`, nil, ""},
		{`echo "open`, nil, ""},
		{``, nil, ""},
	} {
		c, err := ParseCommand(tc.in)
		if tc.argv == nil {
			if err == nil {
				t.Errorf("ParseCommand(%q) = %q, want an error", tc.in, c.Argv)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(c.Argv, tc.argv) || c.Output != tc.out {
			t.Errorf("ParseCommand(%q) = %q %s, want %q %s", tc.in, c.Argv, c.Output, tc.argv, tc.out)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"wc -w", `sh -c 'a | b'`, `echo "x\"y"`, `@text a\ b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommand(s)
		if err == nil && (len(c.Argv) == 0 || strings.HasPrefix(c.Argv[0], "@")) {
			t.Fatalf("ParseCommand(%q) = %q without an error", s, c.Argv)
		}
	})
}

func TestResult(t *testing.T) {
	for _, tc := range []struct {
		mode Output
		out  string
		want string
		err  bool
	}{
		{OutputAuto, "42\n", "42", false},
		{OutputAuto, "  {\"a\": [1, 2]}\n", `{"a":[1,2]}`, false},
		{OutputAuto, "hello world\n", `"hello world"`, false},
		{OutputAuto, "\n", "null", false},
		{OutputAuto, "1 2\n", `"1 2"`, false},
		{OutputJSON, "[1]", "[1]", false},
		{OutputJSON, "nope", "", true},
		{OutputJSON, "", "", true},
		{OutputText, "42\n", `"42"`, false},
		{OutputText, "  x  \n\n", `"  x  "`, false},
		{OutputLines, "a\nb\r\n\nc\n", `["a","b","","c"]`, false},
		{OutputLines, "", `[]`, false},
	} {
		v, err := Result(tc.mode, []byte(tc.out))
		if (err != nil) != tc.err || string(v) != tc.want {
			t.Errorf("Result(%s, %q) = %s, %v; want %s (error %v)", tc.mode, tc.out, v, err, tc.want, tc.err)
		}
	}
}

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newHost(t *testing.T) *Host {
	t.Helper()
	h, err := New(Config{Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func run(t *testing.T, h *Host, c *fn.Call) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := h.Call(ctx, c)
	return string(v), err
}

func mustRun(t *testing.T, h *Host, c *fn.Call) string {
	t.Helper()
	v, err := run(t, h, c)
	if err != nil {
		t.Fatalf("cmd:%s: %v", c.Ref, err)
	}
	return v
}

func wantKind(t *testing.T, err error, kind wire.ErrorKind) *wire.TaskError {
	t.Helper()
	var te *wire.TaskError
	if !errors.As(err, &te) || te.Kind != kind {
		t.Fatalf("got %v, want a task error of kind %s", err, kind)
	}
	return te
}

func TestWordCountOverChunks(t *testing.T) {
	h := newHost(t)
	var b strings.Builder
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox %d jumps\n", i, i*i)
	}
	data := b.String()
	path := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("wc", "-w", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want int
	fmt.Sscan(string(out), &want)

	// Four chunks split on line ends, as the partitioner does.
	total := 0
	start := 0
	for part := 0; part < 4; part++ {
		end := len(data)
		if part < 3 {
			end = (part + 1) * len(data) / 4
			end += strings.IndexByte(data[end:], '\n') + 1
		}
		o := wire.Object{URL: "file://" + path, Part: part, Parts: 4, Start: int64(start), End: int64(end), Size: int64(len(data))}
		v := mustRun(t, h, &fn.Call{Ref: "wc -w", Obj: &fn.Object{Object: o, Body: strings.NewReader(data[start:end])}})
		var n int
		if err := json.Unmarshal([]byte(v), &n); err != nil {
			t.Fatalf("part %d: wc -w gave %s, not a number", part, v)
		}
		total += n
		start = end
	}
	if total != want {
		t.Errorf("sum of wc -w over chunks = %d, wc -w of the file = %d", total, want)
	}
	// A pipeline through sh, with the chunk metadata in the environment.
	v := mustRun(t, h, &fn.Call{Ref: `@lines sh -c 'head -c 9 | tr a-z A-Z; echo; echo "$SKEIN_OBJ"'`,
		Obj: &fn.Object{Object: wire.Object{Key: "k", Part: 1}, Body: strings.NewReader(data)}})
	var lines []string
	if err := json.Unmarshal([]byte(v), &lines); err != nil || len(lines) != 2 || lines[0] != "LINE 0: T" || !strings.Contains(lines[1], `"key":"k"`) {
		t.Errorf("pipeline gave %s (%v)", v, err)
	}
}

func TestInputAndOutput(t *testing.T) {
	h := newHost(t)
	args := []wire.Value{wire.Value("1"), wire.Value(`"two"`)}
	kwargs := map[string]wire.Value{"y": wire.Value("3")}
	if got := mustRun(t, h, &fn.Call{Ref: "cat", Args: args, Kwargs: kwargs}); got != `{"args":[1,"two"],"kwargs":{"y":3}}` {
		t.Errorf("cat of the input = %s", got)
	}
	for ref, want := range map[string]string{
		`echo '{"a": 1}'`:               `{"a":1}`,
		`echo hello world`:              `"hello world"`,
		`@text echo 42`:                 `"42"`,
		`echo 42`:                       `42`,
		`true`:                          `null`,
		`@lines printf 'a\nb\n'`:        `["a","b"]`,
		`sh -c 'echo "$SKEIN_X"'`:       `"from env"`,
		`sh -c 'echo note >&2; echo 1'`: `1`,
	} {
		var log bytes.Buffer
		got := mustRun(t, h, &fn.Call{Ref: ref, Env: map[string]string{"SKEIN_X": "from env"}, Log: &log})
		if got != want {
			t.Errorf("cmd:%s = %s, want %s", ref, got, want)
		}
		if strings.Contains(ref, ">&2") && log.String() != "note\n" {
			t.Errorf("stderr in the log = %q, want %q", log.String(), "note\n")
		}
	}
	// A script shipped with the job's modules runs from there.
	mods := t.TempDir()
	if err := os.WriteFile(filepath.Join(mods, "tool.sh"), []byte("#!/bin/sh\necho \"[\\\"$(basename \"$PWD\")\\\", $#]\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRun(t, h, &fn.Call{Ref: "./tool.sh a b", ModulesDir: mods}), fmt.Sprintf(`["%s",2]`, filepath.Base(mods)); got != want {
		t.Errorf("shipped script = %s, want %s", got, want)
	}
	_, err := run(t, h, &fn.Call{Ref: "@json echo not json"})
	if te := wantKind(t, err, wire.ErrUser); te.Type != "OutputError" {
		t.Errorf("@json with text output: %+v", te)
	}
}

func TestFailures(t *testing.T) {
	h := newHost(t)
	_, err := run(t, h, &fn.Call{Ref: `sh -c 'echo working >&2; echo "it broke" >&2; exit 3'`})
	te := wantKind(t, err, wire.ErrUser)
	if !te.Retryable || !strings.Contains(te.Message, "exit status 3") || !strings.Contains(te.Message, "it broke") || te.Stack != "working\nit broke\n" {
		t.Errorf("exit 3: %+v", te)
	}
	_, err = run(t, h, &fn.Call{Ref: "no-such-command-here --flag"})
	wantKind(t, err, wire.ErrUnknownFn)
	_, err = run(t, h, &fn.Call{Ref: "wc -w | sort"})
	wantKind(t, err, wire.ErrBadInput)

	small, err := New(Config{MaxOutput: 10})
	if err != nil {
		t.Fatal(err)
	}
	_, err = run(t, small, &fn.Call{Ref: "seq 100"})
	if te := wantKind(t, err, wire.ErrUser); te.Type != "OutputError" {
		t.Errorf("too much output: %+v", te)
	}
	if err := (Config{MaxOutput: -1, Dir: "/nonexistent", Env: []string{"X"}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "MaxOutput") || !strings.Contains(err.Error(), "Dir") || !strings.Contains(err.Error(), "Env[0]") {
		t.Errorf("Validate = %v", err)
	}
}

func TestTimeoutKillsGroup(t *testing.T) {
	h := newHost(t)
	marker := filepath.Join(t.TempDir(), "grandchild-ran")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The background sleep holds stdout open; killing only sh would leave
	// it, and the marker would appear.
	_, err := h.Call(ctx, &fn.Call{Ref: fmt.Sprintf(`sh -c '(sleep 1; touch %s) & sleep 30'`, marker)})
	wantKind(t, err, wire.ErrTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
	time.Sleep(1200 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("a grandchild outlived the timeout")
	}
	if got := mustRun(t, h, &fn.Call{Ref: "echo 7"}); got != "7" {
		t.Errorf("after a timeout: %s", got)
	}
}

// TestLeftoverChildDoesNotHoldTheResult: a command that exits leaving a
// child behind that holds its stdout and stderr open (`cmd &` in a shell)
// has its result as soon as it exits, and the child is killed. Waiting
// for the pipes to close instead ran out WaitDelay and reported the
// successful command as failed ("ExitError: exit status 0").
func TestLeftoverChildDoesNotHoldTheResult(t *testing.T) {
	h := newHost(t)
	marker := filepath.Join(t.TempDir(), "child-ran")
	start := time.Now()
	got := mustRun(t, h, &fn.Call{Ref: fmt.Sprintf(`sh -c '(sleep 3; touch %s) & echo 42; echo warn >&2'`, marker)})
	if got != "42" {
		t.Errorf("result %s, want 42", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the result took %v, want it when the command exits", d)
	}
	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command's leftover child outlived it")
	}
}

// failingReader gives data, then err: a chunk whose storage fails midway.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestInputReadErrorFailsTheTask: a chunk that cannot be read to its end
// fails the task, even though the command, seeing its input end early,
// exits 0 with an answer for part of it. A failure the storage may mend is
// internal and retried; one it will not (fn.BadInput) is bad input.
func TestInputReadErrorFailsTheTask(t *testing.T) {
	h := newHost(t)
	for _, tc := range []struct {
		err       error
		kind      wire.ErrorKind
		retryable bool
	}{
		{errors.New("connection reset by peer"), wire.ErrInternal, true},
		{fn.BadInput(errors.New("object gone")), wire.ErrBadInput, false},
	} {
		body := &failingReader{data: "one two three\nfour five\n", err: tc.err}
		v, err := run(t, h, &fn.Call{Ref: "wc -w", Obj: &fn.Object{Object: wire.Object{Key: "k"}, Body: body}})
		te := wantKind(t, err, tc.kind)
		if te.Retryable != tc.retryable || !strings.Contains(te.Message, "reading its input") {
			t.Errorf("%v: got %+v (result %s), want kind %s retryable %v, saying the input could not be read", tc.err, te, v, tc.kind, tc.retryable)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	h := newHost(t)
	py := os.Getenv(testenv.Python)
	if py == "" {
		var err error
		if py, err = exec.LookPath("python3"); err != nil {
			py = testenv.Require(t, testenv.Python)
		}
	}
	alloc := func(mb int) string {
		return fmt.Sprintf(`%s -c 'print(len(bytearray(%d << 20)) >> 20)'`, py, mb)
	}
	if got := mustRun(t, h, &fn.Call{Ref: alloc(8), MemoryMB: 96}); got != "8" {
		t.Fatalf("8 MB under a 96 MB limit: %s", got)
	}
	_, err := run(t, h, &fn.Call{Ref: alloc(128), MemoryMB: 96})
	te := wantKind(t, err, wire.ErrOOM)
	if !strings.Contains(te.Message, "96 MB") || !strings.Contains(te.Stack, "MemoryError") {
		t.Errorf("oom: %+v", te)
	}
	if got := mustRun(t, h, &fn.Call{Ref: alloc(128)}); got != "128" {
		t.Errorf("128 MB without a limit: %s", got)
	}
	// A plain failure under a limit stays a plain failure.
	_, err = run(t, h, &fn.Call{Ref: "false", MemoryMB: 96})
	wantKind(t, err, wire.ErrUser)
}

// TestPeakMemory: a call reports its process's peak resident memory.
func TestPeakMemory(t *testing.T) {
	h := newHost(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		py = testenv.Require(t, testenv.Python)
	}
	small := &fn.Call{Ref: "true"}
	mustRun(t, h, small)
	big := &fn.Call{Ref: fmt.Sprintf(`%s -c 'b = bytearray(64 << 20); print(len(b) >> 20)'`, py)}
	if got := mustRun(t, h, big); got != "64" {
		t.Fatalf("allocating 64 MiB: %s", got)
	}
	t.Logf("peak: true %d KiB, 64 MiB python %d KiB", small.PeakKB, big.PeakKB)
	// Linux folds the spawning process's peak resident set into the
	// child's maxrss at exec: a command that stays below this process's
	// own peak (true) is reported unknown (0), not as this process's size.
	if small.PeakKB != 0 {
		t.Errorf("peak of true: %d KiB, want 0 (unknown: below the host process's own)", small.PeakKB)
	}
	if big.PeakKB < 64<<10 || big.PeakKB > 1<<20 {
		t.Errorf("peak of a 64 MiB allocation: %d KiB", big.PeakKB)
	}

	// The host process grows by 256 MiB (a runtime with a deep buffer):
	// a 64 MiB command is still not reported as the host's size, and one
	// 200 MiB larger than the host is reported as itself.
	ballast := make([]byte, 256<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	again := &fn.Call{Ref: big.Ref}
	mustRun(t, h, again)
	hostBytes, err := profile.PeakRSS(0)
	if err != nil {
		t.Fatal(err)
	}
	hostMiB := hostBytes >> 20
	hugeMiB := hostMiB + 200
	huge := &fn.Call{Ref: fmt.Sprintf(`%s -c 'b = bytearray(%d << 20); print(len(b) >> 20)'`, py, hugeMiB)}
	if got := mustRun(t, h, huge); got != fmt.Sprint(hugeMiB) {
		t.Fatalf("allocating %d MiB: %s", hugeMiB, got)
	}
	runtime.KeepAlive(ballast)
	t.Logf("with a %d MiB host: 64 MiB python %d KiB, %d MiB python %d KiB", hostMiB, again.PeakKB, hugeMiB, huge.PeakKB)
	if again.PeakKB != 0 {
		t.Errorf("peak of a 64 MiB allocation beside a %d MiB host: %d KiB, want 0 (unknown)", hostMiB, again.PeakKB)
	}
	if huge.PeakKB < hugeMiB<<10 || huge.PeakKB > (hugeMiB+100)<<10 {
		t.Errorf("peak of a %d MiB allocation beside a %d MiB host: %d KiB", hugeMiB, hostMiB, huge.PeakKB)
	}
}

// TestCleanEnvironment: a command sees none of the runtime's environment
// but the allowed variables, those passed by name and the job's own.
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("SKEIN_BUS", "nats://skein:bus-secret@nats:4222")
	t.Setenv("SKEIN_STORAGE_SECRET_KEY", "storage-secret")
	t.Setenv("OTHER_SECRET", "other-secret")
	t.Setenv("PASSED", "passed-value")
	proc, err := fnproc.New(fnproc.Config{PassEnv: []string{"PASSED"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		proc *fnproc.Setup
		want []string
	}{
		{"default", nil, []string{"PATH=", "JOB=job-value"}},
		{"pass-env", proc, []string{"PATH=", "JOB=job-value", "PASSED=passed-value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Proc = tc.proc
			h, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			v, err := h.Call(context.Background(), &fn.Call{Ref: "@lines env", Env: map[string]string{"JOB": "job-value"}})
			if err != nil {
				t.Fatal(err)
			}
			out := string(v)
			for _, bad := range []string{"bus-secret", "storage-secret", "other-secret", "SKEIN_BUS"} {
				if strings.Contains(out, bad) {
					t.Errorf("the command sees %q: %s", bad, out)
				}
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("the command lacks %s: %s", want, out)
				}
			}
			if tc.proc == nil && strings.Contains(out, "PASSED") {
				t.Errorf("a variable not passed reached the command: %s", out)
			}
		})
	}
}
