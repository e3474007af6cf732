package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skeinrun/skein/internal/retry"
)

// Proc is one process started by the harness. Its stderr (and stdout,
// unless Stdout was asked for) goes to a file in the round's log
// directory, kept after the round.
type Proc struct {
	Name    string
	LogPath string
	// StdoutPath is where stdout went when it is kept apart from the log
	// (submit's result); empty otherwise.
	StdoutPath string
	Started    time.Time

	cmd    *exec.Cmd
	tree   bool // kill every descendant too (brokers that fork)
	done   chan struct{}
	ended  time.Time
	err    error
	killed atomic.Bool // the harness sent SIGKILL or SIGTERM on purpose
}

// ProcSpec says how to start a process.
type ProcSpec struct {
	Name  string   // unique within the round: the log file is Name.log
	Path  string   // program
	Args  []string // arguments
	Env   []string // full environment
	Dir   string   // working directory (default: the log directory)
	Split bool     // keep stdout in Name.stdout, apart from the log
	// Tree kills the process's whole tree (its process group and every
	// descendant found in /proc) rather than the process alone: a broker
	// started through a shell script forks its VM.
	Tree bool
}

// Procs starts processes and stops every one of them on Close, whatever
// state they are in. It is safe for concurrent use.
type Procs struct {
	LogDir string

	mu    sync.Mutex
	all   []*Proc
	names map[string]bool
}

// NewProcs returns a process table writing logs into logDir.
func NewProcs(logDir string) (*Procs, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	return &Procs{LogDir: logDir, names: map[string]bool{}}, nil
}

// Start starts a process. The name must be new in this table.
func (ps *Procs) Start(spec ProcSpec) (*Proc, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.names[spec.Name] {
		return nil, fmt.Errorf("chaos: process name %q used twice", spec.Name)
	}
	ps.names[spec.Name] = true
	p := &Proc{Name: spec.Name, LogPath: filepath.Join(ps.LogDir, spec.Name+".log"), tree: spec.Tree, done: make(chan struct{})}
	logf, err := os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "# %s %s\n", spec.Path, strings.Join(spec.Args, " "))
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = ps.LogDir
	}
	cmd.Stderr = logf
	cmd.Stdout = logf
	var outf *os.File
	if spec.Split {
		p.StdoutPath = filepath.Join(ps.LogDir, spec.Name+".stdout")
		if outf, err = os.Create(p.StdoutPath); err != nil {
			logf.Close()
			return nil, err
		}
		cmd.Stdout = outf
	}
	// Own process group, so that a broker's children can be found and
	// killed with it; SIGKILL if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		if outf != nil {
			outf.Close()
		}
		return nil, fmt.Errorf("chaos: start %s: %w", spec.Name, err)
	}
	p.cmd = cmd
	p.Started = time.Now()
	ps.all = append(ps.all, p)
	go func() {
		p.err = cmd.Wait()
		p.ended = time.Now()
		logf.Close()
		if outf != nil {
			outf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// All returns every process started so far, in start order.
func (ps *Procs) All() []*Proc {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]*Proc(nil), ps.all...)
}

// Close kills every process still running and waits for it.
func (ps *Procs) Close() {
	for _, p := range ps.All() {
		p.Kill()
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Killed reports whether the harness stopped the process on purpose.
func (p *Proc) Killed() bool { return p.killed.Load() }

// ExitCode is the exit status once the process has exited: -1 while it
// runs or when a signal ended it.
func (p *Proc) ExitCode() int {
	if p.Running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Exit describes how the process ended, for reports.
func (p *Proc) Exit() string {
	if p.Running() {
		return "running"
	}
	s := p.cmd.ProcessState.String()
	if p.Killed() {
		s += " (killed by the harness)"
	}
	return fmt.Sprintf("%s after %s", s, p.ended.Sub(p.Started).Round(time.Millisecond))
}

// Kill sends SIGKILL (to the whole tree for a Tree process) and waits
// until the process has exited.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	p.killed.Store(true)
	pids := []int{p.Pid()}
	if p.tree {
		pids = append(pids, descendants(p.Pid())...)
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-p.done
	if p.tree {
		// The forked VM is not our child: wait until it is gone, or its
		// listening socket may still accept a connection for a moment.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = waitFor(ctx, func() error {
			for _, pid := range pids[1:] {
				if syscall.Kill(pid, 0) == nil {
					return fmt.Errorf("process %d still exists", pid)
				}
			}
			return nil
		})
	}
}

// Pause stops the process (SIGSTOP) for d, then lets it go on (SIGCONT),
// as a long garbage-collection pause or a frozen virtual machine would.
func (p *Proc) Pause(d time.Duration) {
	if !p.Running() {
		return
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGSTOP)
	time.Sleep(d)
	_ = syscall.Kill(p.Pid(), syscall.SIGCONT)
}

// Wait waits for the process to exit or ctx to end.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Log returns what the process wrote to its log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Stdout returns what the process wrote to stdout (Split processes).
func (p *Proc) Stdout() string {
	if p.StdoutPath == "" {
		return ""
	}
	b, _ := os.ReadFile(p.StdoutPath)
	return string(b)
}

// Tail returns the last n lines of the log.
func (p *Proc) Tail(n int) string { return tail(p.Log(), n) }

// WaitLog waits until the log contains s, the process exits, or ctx
// ends.
func (p *Proc) WaitLog(ctx context.Context, s string) error {
	return waitFor(ctx, func() error {
		if strings.Contains(p.Log(), s) {
			return nil
		}
		if !p.Running() {
			return retry.Permanent(fmt.Errorf("%s exited (%s) before logging %q; last lines:\n%s", p.Name, p.Exit(), s, p.Tail(30)))
		}
		return fmt.Errorf("%s has not logged %q yet", p.Name, s)
	})
}

// waitFor polls cond until it returns nil, a permanent error, or ctx
// ends; the error says what was awaited.
func waitFor(ctx context.Context, cond func() error) error {
	return retry.Do(ctx, retry.Policy{Initial: 20 * time.Millisecond, Max: 250 * time.Millisecond}, cond)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// grep returns the lines of s that contain any of subs.
func grep(s string, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// descendants lists every process below pid, read from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], id)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// permanentf is a condition that waiting longer cannot fix.
func permanentf(format string, args ...any) error {
	return retry.Permanent(fmt.Errorf(format, args...))
}
