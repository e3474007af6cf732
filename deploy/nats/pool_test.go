package nats

import (
	"strings"
	"testing"
)

// TestRuntimeOutsideItsPools: a runtime asking for a pool its user may
// not take fails at once, exit 5, naming the refused subject.
func TestRuntimeOutsideItsPools(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a")
	c := start(t, s.roleEnv("a", "coordinator"), "coordinator")
	waitFor(t, c, "coordinator serving")
	code, _, errOut := run(t, s.roleEnv("a", "runtime"), "runtime", "--pool", "gpu", "--max-tasks", "1")
	if code != 5 || !strings.Contains(errOut, "permission denied") || !strings.Contains(errOut, "q-gpu") {
		t.Errorf("runtime on a pool it may not take: exit %d, stderr %q; want exit 5, permission denied on q-gpu", code, errOut)
	}
}

// TestLocalReducerNeedsRuntimeRights: --reducer-wait-local runs the
// reducer in submit, which a submitter's rights do not allow (it takes
// tasks and publishes events): submit says so and exits 5 instead of
// waiting for a reducer that cannot start.
func TestLocalReducerNeedsRuntimeRights(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a")
	c := start(t, s.roleEnv("a", "coordinator"), "coordinator")
	waitFor(t, c, "coordinator serving")
	start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "2")
	code, out, errOut := run(t, s.roleEnv("a", "submitter"), "submit", "mapreduce", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--reduce-function", "product", "--reducer-wait-local", "--quiet")
	if code != 5 || !strings.Contains(errOut, "permission denied") || !strings.Contains(errOut, "reducer_wait_local") {
		t.Errorf("reducer_wait_local as a submitter: exit %d, stdout %q, stderr %q; want exit 5 naming the refused permission", code, out, errOut)
	}
}
