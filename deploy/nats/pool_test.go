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
