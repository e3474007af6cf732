package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// TestRuntimeWithoutPython: a runtime whose PATH holds no python3 (the
// distroless image, a native Go action) starts with its default hosts
// (go,py), runs Go functions, and fails a py: task at once with an error
// that says why, not retried although the job allows retries.
func TestRuntimeWithoutPython(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	emptyPath := t.TempDir()
	module := filepath.Join(t.TempDir(), "mod.py")
	if err := os.WriteFile(module, []byte("def f(x):\n    return x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rts := clusterEnv(t, url, 1, []string{"PATH=" + emptyPath, "SKEIN_PYTHON="})
	waitOutput(t, rts[0], "runtime started", 15*time.Second)
	if !strings.Contains(rts[0].out.String(), "no interpreter") {
		t.Errorf("the runtime did not warn that it has no Python interpreter:\n%s", rts[0].out.String())
	}

	out, errOut, code := submit(t, "call", "--bus", url, "--function", "add", "--data", `{"x":1,"y":3}`)
	if code != 0 || strings.TrimSpace(out) != "4" {
		t.Fatalf("Go function on a runtime without Python: exit %d, %q: %s", code, out, errOut)
	}

	_, errOut, code = submit(t, "call", "--bus", url, "--function", "py:mod:f", "--include-modules", module,
		"--data", `[1]`, "--retries", "3")
	if code == 0 {
		t.Fatal("a py: function succeeded on a runtime without Python")
	}
	for _, want := range []string{"py: functions cannot run on this runtime", "no Python interpreter", "python3"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the job's error lacks %q:\n%s", want, errOut)
		}
	}
	if n := strings.Count(rts[0].out.String(), "refusing a task"); n != 1 {
		t.Errorf("the py: task ran %d times, want once (its error is not retryable):\n%s", n, rts[0].out.String())
	}
}
