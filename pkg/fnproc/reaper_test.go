package fnproc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// group starts `sh -c 'sleep 60 & sleep 60'` as the leader of a process
// group of its own: a leader and its children, as a function with
// subprocesses.
// It returns the group's id; the test's end kills what is left.
func group(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	// Wait for the children: the shell and two sleeps.
	for deadline := time.Now().Add(5 * time.Second); members(pgid) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("group %d has %d members, want 3", pgid, members(pgid))
		}
	}
	return pgid
}

// members counts the live processes of group pgid.
func members(pgid int) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[0] != "Z" && f[0] != "X" && f[2] == fmt.Sprint(pgid) {
			n++
		}
	}
	return n
}

// waitGone waits until group pgid has no live member.
func waitGone(t *testing.T, pgid int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); members(pgid) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("group %d still has %d live members after %v", pgid, members(pgid), within)
		}
	}
}

// TestReapKillsTheGroupsStillListed: at the end of its input the reaper
// kills every group added and not removed, and only those.
func TestReapKillsTheGroupsStillListed(t *testing.T) {
	kept, gone := group(t), group(t)
	reap(strings.NewReader(fmt.Sprintf("+%d\n+%d\n-%d\nnonsense\n+x\n+1\n\n", kept, gone, kept)))
	waitGone(t, gone, 5*time.Second)
	if n := members(kept); n != 3 {
		t.Fatalf("the group removed from the list has %d members, want 3 (untouched)", n)
	}
}

// TestReaperOutlivesItsWriter: a reaper started by Guard kills the groups
// guarded when the pipe's writer goes (as when the runtime is killed),
// not those released before; and a reaper that died is replaced.
func TestReaperOutlivesItsWriter(t *testing.T) {
	saved := theGuard
	theGuard = &guard{groups: map[int]struct{}{}}
	t.Cleanup(func() {
		if theGuard.w != nil {
			theGuard.w.Close()
		}
		theGuard = saved
	})
	released, guarded := group(t), group(t)
	rel1, err := Guard(released)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Guard(guarded); err != nil {
		t.Fatal(err)
	}
	rel1()
	// The reaper is a process of its own, named so.
	if !hasProcess(reaperName) {
		t.Fatalf("no %s process is running", reaperName)
	}
	theGuard.mu.Lock()
	theGuard.w.Close() // the runtime's death, as the reaper sees it
	theGuard.w = nil
	theGuard.mu.Unlock()
	waitGone(t, guarded, 5*time.Second)
	if n := members(released); n != 3 {
		t.Fatalf("the released group has %d members, want 3 (untouched)", n)
	}
	// The next Guard starts a reaper again.
	again := group(t)
	if _, err := Guard(again); err != nil {
		t.Fatal(err)
	}
	theGuard.mu.Lock()
	theGuard.w.Close()
	theGuard.w = nil
	theGuard.mu.Unlock()
	waitGone(t, again, 5*time.Second)
}

func hasProcess(name string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.TrimRight(string(b), "\x00") == name {
			return true
		}
	}
	return false
}
