package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// TestKilledRuntimeTakesItsFunctionsAlong: a runtime killed with SIGKILL
// leaves none of the processes it started for functions running: not the
// command or the Python interpreter, and not what they started in turn.
// Left running, they would go on beside the attempt that another runtime
// makes of the same task once its lease ends.
func TestKilledRuntimeTakesItsFunctionsAlong(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	clusterEnv(t, url, 0, nil)
	rt := start(t, "runtime", "--bus", url, "--hosts", "go,py,cmd", "--slots", "2", "--log-level", "debug")
	waitOutput(t, rt, "runtime started", 15*time.Second)
	// A command with a child of its own, and a Python function with a
	// subprocess: each holds its slot for minutes.
	for _, args := range [][]string{
		{"call", "--bus", url, "--no-wait", "--function", "cmd:sh -c 'sleep 300; echo done'"},
		{"call", "--bus", url, "--no-wait", "--function", "py:subprocess:run", "--data", `{"args":["sleep","301"]}`},
	} {
		if _, errOut, code := submit(t, args...); code != 0 {
			t.Fatalf("submit %v: exit %d: %s", args, code, errOut)
		}
	}
	var procs []osProc
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		procs = descendants(rt.cmd.Process.Pid)
		if hasCmdline(procs, "sleep\x00300") && hasCmdline(procs, "sleep\x00301") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the functions did not start; the runtime's processes: %v", procs)
		}
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p.alive() {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	if err := rt.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = rt.cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []osProc
		for _, p := range procs {
			if p.alive() {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the runtime's SIGKILL these of its function processes still run: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// osProc is a process as /proc shows it; start tells it from a later
// process given the same pid.
type osProc struct {
	pid, ppid int
	start     string
	cmdline   string
}

func (p osProc) String() string {
	return fmt.Sprintf("%d %q", p.pid, strings.ReplaceAll(p.cmdline, "\x00", " "))
}

// alive reports whether p still runs (a zombie has ended).
func (p osProc) alive() bool {
	q, ok := readProc(p.pid)
	return ok && q.start == p.start
}

// readProc reads pid's parent, start time and command line; false for a
// process that has ended or is a zombie.
func readProc(pid int) (osProc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return osProc{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return osProc{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return osProc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return osProc{pid: pid, ppid: ppid, start: f[19], cmdline: strings.TrimRight(string(cmdline), "\x00")}, true
}

// descendants lists the processes below pid.
func descendants(pid int) []osProc {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]osProc{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(n); ok {
			children[p.ppid] = append(children[p.ppid], p)
		}
	}
	var out []osProc
	var walk func(int)
	walk = func(pid int) {
		for _, c := range children[pid] {
			out = append(out, c)
			walk(c.pid)
		}
	}
	walk(pid)
	return out
}

func hasCmdline(procs []osProc, s string) bool {
	for _, p := range procs {
		if strings.Contains(p.cmdline, s) {
			return true
		}
	}
	return false
}
