package fnproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

// A function's processes must not outlive the process that started them:
// a runtime killed with SIGKILL (or by the kernel's OOM killer) cannot kill
// them itself, and a command or interpreter left running would go on beside
// the attempt another runtime makes of the same task once its lease ends.
// Two things see to it:
//
//   - every function process gets SIGKILL from the kernel when its parent
//     dies (SysProcAttr's Pdeathsig): the command or interpreter itself;
//   - what those start in turn (a shell's commands, a Python function's
//     subprocesses) stays in their process group, and a reaper kills the
//     groups. The reaper is a small process of its own (this program
//     again, see init), started with the first group and reading the
//     groups to guard on a pipe from this process; when the pipe's last
//     writer dies, it kills every group still listed and exits.
//
// A process that leaves its group (setsid) escapes the reaper, as it
// escapes the timeout's kill of the group.

// reaperName is the reaper's argv[0] (what ps shows), and reaperEnv a
// variable it is started with; init runs the reaper only for both.
const (
	reaperName = "skein-fn-reaper"
	reaperEnv  = "SKEIN_FN_REAPER"
)

func init() {
	if len(os.Args) == 1 && os.Args[0] == reaperName && os.Getenv(reaperEnv) == "1" {
		reap(os.Stdin)
		os.Exit(0)
	}
}

// reap reads lines "+PGID" (guard the group) and "-PGID" (the group is
// gone) until r ends, then kills every group still guarded.
func reap(r io.Reader) {
	// Signals meant for the runtime (a terminal's ^C reaches its whole
	// process group) must not take the reaper first.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	groups := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// guard is this process's link to its reaper.
type guard struct {
	mu     sync.Mutex
	groups map[int]struct{}
	w      *os.File // the pipe to the reaper; nil: none running
}

var theGuard = &guard{groups: map[int]struct{}{}}

// Guard has the process group pgid (a function process started with
// SysProcAttr, its own group's leader) killed should this process die
// while the group runs. Call the returned release once the group has
// been killed and its leader reaped. An error means the group is not
// guarded (the reaper could not start); its leader still dies with this
// process (Pdeathsig), what it started may not.
func Guard(pgid int) (release func(), err error) {
	g := theGuard
	g.mu.Lock()
	defer g.mu.Unlock()
	g.groups[pgid] = struct{}{}
	release = func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.groups, pgid)
		if g.w != nil {
			_, _ = fmt.Fprintf(g.w, "-%d\n", pgid)
		}
	}
	if g.w != nil {
		if _, err = fmt.Fprintf(g.w, "+%d\n", pgid); err == nil {
			return release, nil
		}
		// The reaper died: start another, which is told every group.
		g.w.Close()
		g.w = nil
	}
	if err := g.start(); err != nil {
		return release, err
	}
	return release, nil
}

// start starts a reaper and tells it the groups guarded now.
func (g *guard) start() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("fnproc: reaper: %w", err)
	}
	defer r.Close()
	// /proc/self/exe is this program even when its file has been replaced
	// since it started (an upgrade in place).
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{reaperName}, Env: []string{reaperEnv + "=1"}, Stdin: r,
		// A group of its own: a terminal's signals to the runtime's
		// group do not reach it. No Pdeathsig: it is to outlive us.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("fnproc: starting the reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	for pgid := range g.groups {
		if _, err := fmt.Fprintf(w, "+%d\n", pgid); err != nil {
			w.Close()
			return fmt.Errorf("fnproc: reaper: %w", errors.Join(err, cmd.Process.Kill()))
		}
	}
	g.w = w
	return nil
}
