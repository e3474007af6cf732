package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/cli"
)

const pyModule = `import time

def add(x, y):
    print("adding", x, y)  # must land in the task's log, not in the protocol
    return x + y

def boom(x):
    return helper(x)

def helper(x):
    raise ValueError("bad value %r" % (x,))

def slow(x):
    time.sleep(x)
    return x

def hog(mb):
    blocks = []
    for _ in range(mb):
        blocks.append(bytearray(1 << 20))
    return len(blocks)

def total(values):
    return sum(values)
`

// pyEnv writes my_functions.py into a fresh directory (not on any path:
// it reaches the runtimes only by --include-modules) and gives each run
// its own storage root so shipping really goes through storage.
func pyEnv(t *testing.T) (module string, env []string) {
	dir := t.TempDir()
	module = filepath.Join(dir, "my_functions.py")
	if err := os.WriteFile(module, []byte(pyModule), 0o644); err != nil {
		t.Fatal(err)
	}
	return module, []string{"SKEIN_STORAGE_LOCAL_ROOT=" + filepath.Join(dir, "store")}
}

func TestPythonFunctions(t *testing.T) {
	type target struct {
		name string
		bus  func(t *testing.T, env []string) []string // extra args; starts services
	}
	targets := []target{{"embedded", func(t *testing.T, env []string) []string { return nil }}}
	for _, bk := range buses {
		bk := bk
		targets = append(targets, target{bk.name, func(t *testing.T, env []string) []string {
			url := namespaced(t, testenv.Require(t, bk.env))
			clusterEnv(t, url, 1, env)
			return []string{"--bus", url}
		}})
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			module, env := pyEnv(t)
			busArgs := tg.bus(t, env)
			run := func(args ...string) (string, string, int) {
				return submitEnv(t, env, append(args, busArgs...)...)
			}
			py := func(name string) []string {
				return []string{"--function", "py:my_functions:" + name, "--include-modules", module}
			}

			out, errOut, code := run(append([]string{"map", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`}, py("add")...)...)
			if code != 0 || out != "[2,3,4]\n" {
				t.Fatalf("map: exit %d, %q; %s", code, out, errOut)
			}
			out, errOut, code = run(append([]string{"call", "--data", `{"x":7}`}, py("boom")...)...)
			if code != cli.ExitJobFailed || out != "" {
				t.Fatalf("raise: exit %d, stdout %q", code, out)
			}
			for _, want := range []string{"ValueError: bad value 7", "Traceback (most recent call last)", "in helper", "raise ValueError"} {
				if !strings.Contains(errOut, want) {
					t.Fatalf("the traceback does not show %q:\n%s", want, errOut)
				}
			}
			_, errOut, code = run(append([]string{"call", "--data", `{"x":30}`, "--task-timeout", "1"}, py("slow")...)...)
			if code != cli.ExitJobFailed || !strings.Contains(errOut, "timeout") {
				t.Fatalf("timeout: exit %d; %s", code, errOut)
			}
			_, errOut, code = run(append([]string{"call", "--data", `{"mb":400}`, "--runtime-memory", "128"}, py("hog")...)...)
			if code != cli.ExitJobFailed || !strings.Contains(errOut, "oom") {
				t.Fatalf("out of memory: exit %d; %s", code, errOut)
			}
			// The worker goes on after each failure: the same runtime runs a
			// map-reduce with a Python list reducer.
			out, errOut, code = run(append([]string{"mapreduce", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`, "--reduce-function", "py:my_functions:total"}, py("add")...)...)
			if code != 0 || out != "9\n" {
				t.Fatalf("mapreduce after failures: exit %d, %q; %s", code, out, errOut)
			}
		})
	}
}

// A command over chunks: `wc -w` of every chunk adds up to `wc -w` of the
// object.
func TestCommandOverChunks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "text.txt")
	writeText(t, path, 1<<20)
	want := wcWords(t, path)
	out := mustSubmit(t, "map", "--function", "cmd:wc -w", "--iterdata", fmt.Sprintf(`["local://%s"]`, path), "--chunk-n", "7")
	got, parts := sumList(t, out)
	if got != want || parts != 7 {
		t.Fatalf("cmd:wc -w over 7 chunks: %d words in %d parts, want %d", got, parts, want)
	}
}

// pickleScript pickles, with cloudpickle, a closure and a reducer defined
// in __main__ (they can only travel by value) into the directory argv[1].
const pickleScript = `
import sys, cloudpickle
factor = 7
scale = lambda x: factor * x
def total(results):
    return sum(results)
for name, f in (("scale.pkl", scale), ("total.pkl", total)):
    with open(sys.argv[1] + "/" + name, "wb") as out:
        out.write(cloudpickle.dumps(f))
`

// TestPythonPickledFunctions: --function py:@PATH ships a callable pickled
// with cloudpickle with the job and the runtimes' Python host runs it,
// embedded and on each bus.
func TestPythonPickledFunctions(t *testing.T) {
	py := testenv.Require(t, testenv.Python) // the test venv: it has cloudpickle
	targets := []struct {
		name string
		bus  func(t *testing.T, env []string) []string
	}{{"embedded", func(t *testing.T, env []string) []string { return nil }}}
	for _, bk := range buses {
		bk := bk
		targets = append(targets, struct {
			name string
			bus  func(t *testing.T, env []string) []string
		}{bk.name, func(t *testing.T, env []string) []string {
			url := namespaced(t, testenv.Require(t, bk.env))
			// The venv's Python (with cloudpickle) is under this user's
			// home: run the functions as this user, not nobody.
			clusterEnv(t, url, 1, env, "--run-as", strconv.Itoa(os.Getuid()))
			return []string{"--bus", url}
		}})
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command(py, "-c", pickleScript, dir).CombinedOutput(); err != nil {
				t.Fatalf("pickling with %s: %v\n%s", py, err, out)
			}
			env := []string{"SKEIN_PYTHON=" + py, "SKEIN_STORAGE_LOCAL_ROOT=" + filepath.Join(dir, "store")}
			busArgs := tg.bus(t, env)
			out, errOut, code := submitEnv(t, env, append([]string{"mapreduce", "--iterdata", `[1,2,3]`,
				"--function", "py:@" + filepath.Join(dir, "scale.pkl"),
				"--reduce-function", "py:@" + filepath.Join(dir, "total.pkl")}, busArgs...)...)
			if code != 0 || out != "42\n" {
				t.Fatalf("mapreduce of pickled functions: exit %d, %q, want 42; %s", code, out, errOut)
			}
			_, errOut, code = submitEnv(t, env, append([]string{"call", "--data", `{"x":1}`,
				"--function", "py:@" + filepath.Join(dir, "none.pkl")}, busArgs...)...)
			if code != 2 || !strings.Contains(errOut, "no such file") {
				t.Fatalf("a missing pickle: exit %d, want 2 and 'no such file'; %s", code, errOut)
			}
		})
	}
}

// TestShippedModulesOnLocalBackend: the runtimes that `coordinator
// --backend local` runs inside itself get the job's shipped modules, as a
// runtime process does (they got none: py: functions of --include-modules
// failed with "the job ships no modules").
func TestShippedModulesOnLocalBackend(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	module, env := pyEnv(t)
	co := startEnv(t, env, "coordinator", "--bus", url, "--backend", "local", "--workers", "2", "--log-level", "debug")
	waitOutput(t, co, "coordinator serving", 10*time.Second)
	out, errOut, code := submitEnv(t, env, "map", "--bus", url, "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`,
		"--function", "py:my_functions:add", "--include-modules", module)
	if code != 0 || out != "[2,3,4]\n" {
		t.Fatalf("map on the local backend: exit %d, %q; %s", code, out, errOut)
	}
}
