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

// TestCoordinatorRestartUnderRoles: a coordinator killed mid-job and
// started again takes the job up (it replays the job log and marks the
// job's events) with the coordinator's rights alone.
func TestCoordinatorRestartUnderRoles(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a")
	c1 := start(t, s.roleEnv("a", "coordinator"), "coordinator")
	waitFor(t, c1, "coordinator serving")
	start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "2")
	code, out, errOut := run(t, s.roleEnv("a", "submitter"), "submit", "map", "--function", "sleep", "--iterdata", "[1,1,1,1]", "--no-wait")
	if code != 0 {
		t.Fatalf("submit: exit %d %s", code, errOut)
	}
	id := strings.Trim(strings.TrimSpace(out), `"`)
	if err := c1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c2 := start(t, s.roleEnv("a", "coordinator"), "coordinator")
	waitFor(t, c2, "coordinator serving")
	code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "result", id)
	if code != 0 {
		// result may come before the job ends: wait first.
		if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "wait", id); code != 0 {
			t.Fatalf("wait after the restart: exit %d %s %s", code, out, errOut)
		}
		code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "result", id)
	}
	if code != 0 || strings.TrimSpace(out) != "[1,1,1,1]" {
		t.Errorf("result after the restart: exit %d, %q, %s", code, out, errOut)
	}
	if !strings.Contains(c2.out.String(), "took up unfinished jobs") {
		t.Errorf("the restarted coordinator took up no job:\n%s", c2.out.String())
	}
	if o := strings.ToLower(c2.out.String()); strings.Contains(o, "permission") {
		t.Errorf("the restarted coordinator met a permission violation:\n%s", c2.out.String())
	}
}

// TestTwoCoordinatorsUnderRoles: two coordinators of one namespace under
// the shipped roles. Requests are shared between them, so about half of
// the status calls of a job reach the coordinator that does not hold it,
// which forwards them to the holder's direct API subject: the
// coordinator's rights must allow that publish.
func TestTwoCoordinatorsUnderRoles(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a")
	var cos []*proc
	for range 2 {
		c := start(t, s.roleEnv("a", "coordinator"), "coordinator", "--log-level", "debug")
		waitFor(t, c, "coordinator serving")
		cos = append(cos, c)
	}
	start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "2")
	code, out, errOut := run(t, s.roleEnv("a", "submitter"), "submit", "map", "--function", "sleep", "--iterdata", "[2,2,2,2]", "--no-wait")
	if code != 0 {
		t.Fatalf("submit: exit %d %s", code, errOut)
	}
	id := strings.Trim(strings.TrimSpace(out), `"`)
	for i := range 10 {
		if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "status", id); code != 0 || !strings.Contains(out, id) {
			t.Fatalf("status %d: exit %d, %q, %s", i, code, out, errOut)
		}
	}
	if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "wait", id); code != 0 {
		t.Fatalf("wait: exit %d %s %s", code, out, errOut)
	}
	for i := range 4 {
		if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "result", id); code != 0 || strings.TrimSpace(out) != "[2,2,2,2]" {
			t.Fatalf("result %d: exit %d, %q, %s", i, code, out, errOut)
		}
	}
	forwarded := false
	for _, c := range cos {
		o := c.out.String()
		if strings.Contains(strings.ToLower(o), "permission") {
			t.Errorf("a coordinator met a permission violation:\n%s", o)
		}
		forwarded = forwarded || strings.Contains(o, "forward")
	}
	t.Logf("a request was forwarded: %v", forwarded)
}
