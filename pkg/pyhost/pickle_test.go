package pyhost

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// pickler is a script that pickles, with cloudpickle, functions defined in
// __main__ (so they can only travel by value): a closure over a local, a
// lambda, and a function calling a module that must be shipped by name.
const pickler = `
import json, sys, cloudpickle
out = sys.argv[1]
factor = 7
def scale(x, y=1):
    return factor * x + y
double = lambda x: 2 * x
def use_helper(x):
    import helper
    return helper.inc(x)
def write(name, obj, header=None):
    with open(out + "/" + name, "wb") as f:
        if header is not None:
            f.write(b"#skein-pickle " + json.dumps(header).encode() + b"\n")
        f.write(cloudpickle.dumps(obj))
here = "%d.%d.%d" % sys.version_info[:3]
write("scale.pkl", scale, {"python": here, "cloudpickle": cloudpickle.__version__, "name": "scale"})
write("double.pkl", double)
write("helper_user.pkl", use_helper, {"python": here, "name": "use_helper"})
write("old_python.pkl", scale, {"python": "2.7.18", "name": "scale"})
`

// pickled writes the pickles into a fresh modules dir with the test's
// Python (which must have cloudpickle: the test venv does).
func pickled(t *testing.T, py string) string {
	t.Helper()
	if out, err := exec.Command(py, "-c", "import cloudpickle").CombinedOutput(); err != nil {
		msg := "the test Python " + py + " has no cloudpickle (scripts/services/venv.sh installs it): " + string(out)
		if testenv.CI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	cmd := exec.Command(py, "-c", pickler, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pickling: %v\n%s", err, out)
	}
	return dir
}

func TestPickledCallable(t *testing.T) {
	py := findPython(t)
	dir := pickled(t, py)
	h := newHost(t)
	if got := mustCall(t, h, &fn.Call{Ref: "@scale.pkl", ModulesDir: dir, Args: vals(t, 3), Kwargs: map[string]wire.Value{"y": []byte("2")}}); got != "23" {
		t.Errorf("closure: got %s, want 23", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "@double.pkl", ModulesDir: dir, Args: vals(t, 21)}); got != "42" {
		t.Errorf("lambda without a header: got %s, want 42", got)
	}
	// Arguments are checked against the unpickled function's signature.
	_, err := call(t, h, &fn.Call{Ref: "@scale.pkl", ModulesDir: dir, Args: vals(t, 1, 2, 3)})
	taskErr(t, err, wire.ErrBadInput)

	// A module it imports by name must be shipped beside it.
	_, err = call(t, h, &fn.Call{Ref: "@helper_user.pkl", ModulesDir: dir, Args: vals(t, 1)})
	if te := taskErr(t, err, wire.ErrUser); !strings.Contains(te.Message, "helper") {
		t.Errorf("missing helper: %v", te)
	}
	if err := os.WriteFile(filepath.Join(dir, "helper.py"), []byte("def inc(x):\n    return x + 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "@helper_user.pkl", ModulesDir: dir, Args: vals(t, 1), Slot: 1}); got != "2" {
		t.Errorf("with helper shipped: got %s, want 2", got)
	}

	for _, c := range []struct {
		ref, want string
	}{
		{"@old_python.pkl", "pickled by Python 2.7.18"},
		{"@missing.pkl", "have no file 'missing.pkl'"},
	} {
		_, err := call(t, h, &fn.Call{Ref: c.ref, ModulesDir: dir, Slot: 2})
		if te := taskErr(t, err, wire.ErrUnknownFn); !strings.Contains(te.Message, c.want) || te.Retryable {
			t.Errorf("%s: got %q (retryable %t), want a non-retryable error containing %q", c.ref, te.Message, te.Retryable, c.want)
		}
	}
	for _, c := range []*fn.Call{{Ref: "@"}, {Ref: "@../x.pkl", ModulesDir: dir}, {Ref: "@scale.pkl"}} {
		_, err := call(t, h, c)
		taskErr(t, err, wire.ErrBadInput)
	}
}

// TestPickledCallableWithoutCloudpickle: a runtime Python without
// cloudpickle fails the call with a message naming the interpreter and
// the fix, not with an unpickling traceback.
func TestPickledCallableWithoutCloudpickle(t *testing.T) {
	py := findPython(t)
	dir := pickled(t, py)
	// A venv of the same Python without any packages: no cloudpickle.
	bare := filepath.Join(t.TempDir(), "bare")
	base, err := exec.Command(py, "-c", "import sys; print(sys._base_executable)").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(strings.TrimSpace(string(base)), "-m", "venv", "--without-pip", bare).CombinedOutput(); err != nil {
		t.Fatalf("making a bare venv: %v\n%s", err, out)
	}
	barePy := filepath.Join(bare, "bin", "python")
	if out, err := exec.Command(barePy, "-c", "import cloudpickle").CombinedOutput(); err == nil {
		t.Fatalf("the bare venv has cloudpickle: %s", out)
	}
	h, err := New(Config{Python: barePy, ScriptDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	_, err = call(t, h, &fn.Call{Ref: "@scale.pkl", ModulesDir: dir, Args: vals(t, 1)})
	te := taskErr(t, err, wire.ErrUnknownFn)
	for _, want := range []string{"py:@scale.pkl (scale)", "has no cloudpickle module", "pip install cloudpickle", bare} {
		if !strings.Contains(te.Message, want) {
			t.Errorf("message %q lacks %q", te.Message, want)
		}
	}
}

// TestPickledCallableOfAnotherJob: two jobs ship pickled callables under
// the same file name with other bytes; one warm interpreter serves both
// and runs each job's own.
func TestPickledCallableOfAnotherJob(t *testing.T) {
	py := findPython(t)
	src := pickled(t, py)
	h := newHost(t)
	jobDir := func(from string) string {
		b, err := os.ReadFile(filepath.Join(src, from))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f.pkl"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	x, y := jobDir("double.pkl"), jobDir("scale.pkl")
	if got := mustCall(t, h, &fn.Call{Ref: "@f.pkl", ModulesDir: x, Args: vals(t, 3)}); got != "6" {
		t.Errorf("job x: got %s, want 6 (double)", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "@f.pkl", ModulesDir: y, Args: vals(t, 3)}); got != "22" {
		t.Errorf("job y: got %s, want 22 (scale): the interpreter kept job x's function", got)
	}
	if got := mustCall(t, h, &fn.Call{Ref: "@f.pkl", ModulesDir: jobDir("scale.pkl"), Args: vals(t, 1)}); got != "8" {
		t.Errorf("job z: got %s, want 8", got)
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("%d interpreter restarts, want 0 (no module of a job was imported)", n)
	}
}
