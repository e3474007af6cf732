package cmdhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skeinrun/skein/internal/profile"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/fnproc"
	"github.com/skeinrun/skein/pkg/wire"
)

// Config configures a Host.
type Config struct {
	// Dir is the commands' working directory ("" = Proc's work directory
	// when it has one, else the runtime's).
	Dir string
	// Proc says what the commands start with: their environment (never
	// the runtime's whole environment), their user and directories. Nil
	// means fnproc.Default(): the clean environment, the runtime's user.
	Proc *fnproc.Setup
	// Env holds extra KEY=VALUE entries for every command, on top of
	// Proc's environment.
	Env []string
	// MaxOutput caps the stdout kept as a result, in bytes.
	MaxOutput int64
	// StderrTail is how many trailing bytes of stderr a failure carries.
	StderrTail int
	// Shell runs the memory-limit wrapper (ulimit -v, then exec).
	Shell string
	// WaitDelay bounds the wait for the command's output once it has
	// exited and its group has been killed (a process that left the group
	// may hold the pipes), and for it to exit once it has been killed.
	WaitDelay time.Duration
	// Logger receives the host's own messages. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxOutput: 64 << 20, StderrTail: 4 << 10, Shell: "/bin/sh", WaitDelay: 2 * time.Second}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.MaxOutput == 0 {
		c.MaxOutput = d.MaxOutput
	}
	if c.StderrTail == 0 {
		c.StderrTail = d.StderrTail
	}
	if c.Shell == "" {
		c.Shell = d.Shell
	}
	if c.WaitDelay == 0 {
		c.WaitDelay = d.WaitDelay
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Proc == nil {
		c.Proc = fnproc.Default()
	}
	if c.Dir == "" {
		c.Dir = c.Proc.WorkDir()
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.MaxOutput < 0 {
		errs = append(errs, fmt.Errorf("cmdhost: Config.MaxOutput %d is negative", c.MaxOutput))
	}
	if c.StderrTail < 0 {
		errs = append(errs, fmt.Errorf("cmdhost: Config.StderrTail %d is negative", c.StderrTail))
	}
	if c.WaitDelay < 0 {
		errs = append(errs, fmt.Errorf("cmdhost: Config.WaitDelay %v is negative", c.WaitDelay))
	}
	if c.Dir != "" {
		if st, err := os.Stat(c.Dir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("cmdhost: Config.Dir %q is not a directory", c.Dir))
		}
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("cmdhost: Config.Env[%d] %q is not KEY=VALUE", i, kv))
		}
	}
	return errors.Join(errs...)
}

// Host runs commands, one process per call. It is safe for concurrent use.
type Host struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[int]struct{} // process group ids
	closed  bool
}

var _ fn.Host = (*Host)(nil)

// New checks cfg and returns a Host.
func New(cfg Config) (*Host, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Host{cfg: cfg, log: cfg.Logger, running: make(map[int]struct{})}, nil
}

// Close kills the commands still running.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for pgid := range h.running {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return nil
}

// maxEnvInput is the largest SKEIN_INPUT passed in the environment.
const maxEnvInput = 64 << 10

// Call runs the command c.Ref once.
func (h *Host) Call(ctx context.Context, c *fn.Call) (wire.Value, error) {
	cmdSpec, err := ParseCommand(c.Ref)
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: err.Error()}
	}
	if c.MemoryMB < 0 {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: fmt.Sprintf("cmd:%s: negative memory limit %d MB", c.Ref, c.MemoryMB)}
	}
	// Shipped modules are the working directory, so that cmd:./tool.sh
	// runs a script shipped with --include-modules.
	dir := h.cfg.Dir
	if c.ModulesDir != "" {
		dir = c.ModulesDir
	}
	exe := cmdSpec.Argv[0]
	if strings.Contains(exe, "/") && !filepath.IsAbs(exe) && dir != "" {
		exe = filepath.Join(dir, exe)
	}
	exe, err = exec.LookPath(exe)
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrUnknownFn, Message: fmt.Sprintf("cmd:%s: %v", c.Ref, err)}
	}
	input, err := json.Marshal(struct {
		Args   []wire.Value          `json:"args"`
		Kwargs map[string]wire.Value `json:"kwargs"`
	}{nonNil(c.Args), nonNilMap(c.Kwargs)})
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: fmt.Sprintf("cmd:%s: encoding arguments: %v", c.Ref, err)}
	}

	argv := append([]string{exe}, cmdSpec.Argv[1:]...)
	if c.MemoryMB > 0 {
		// RLIMIT_AS is set by the shell between fork and exec, before the
		// command runs.
		argv = append([]string{h.cfg.Shell, "-c", `ulimit -v "$0" && exec "$@"`, strconv.Itoa(c.MemoryMB * 1024)}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(h.cfg.Proc.Env(), h.cfg.Env...)
	if c.ModulesDir != "" {
		cmd.Env = append(cmd.Env, "SKEIN_MODULES="+c.ModulesDir)
	}
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: fmt.Sprintf("cmd:%s: bad environment variable name %q", c.Ref, k)}
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdin io.Reader = bytes.NewReader(input)
	if c.Obj != nil {
		meta, _ := json.Marshal(c.Obj.Object)
		cmd.Env = append(cmd.Env, "SKEIN_OBJ="+string(meta))
		if len(input) <= maxEnvInput {
			cmd.Env = append(cmd.Env, "SKEIN_INPUT="+string(input))
		}
		stdin = c.Obj.Body
	}
	stdout := &capped{max: h.cfg.MaxOutput}
	logw := c.Log
	if logw == nil {
		logw = io.Discard
	}
	stderr := &tail{max: h.cfg.StderrTail}
	// The command's standard streams are pipes this host feeds and drains
	// itself, not os/exec's: Wait then returns when the command exits,
	// even if something it started still holds them, and that is killed
	// with its group right after (see pipes).
	p, err := newPipes()
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Retryable: true, Message: fmt.Sprintf("cmd:%s: %v", c.Ref, err)}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.inR, p.outW, p.errW
	cmd.SysProcAttr = h.cfg.Proc.SysProcAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = h.cfg.WaitDelay

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		p.abort()
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Message: "cmdhost: host is closed", Retryable: true}
	}
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		p.abort()
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Retryable: true, Message: fmt.Sprintf("cmd:%s: starting: %v", c.Ref, err)}
	}
	p.run(stdin, stdout, io.MultiWriter(stderr, logw))
	pgid := cmd.Process.Pid
	h.running[pgid] = struct{}{}
	h.mu.Unlock()
	release, gerr := fnproc.Guard(pgid)
	if gerr != nil {
		h.log.Warn("cmdhost: the command's processes may outlive this runtime should it be killed", "err", gerr)
	}
	// The child was spawned sharing this process's memory (vfork) and
	// Linux folds that memory's peak into the child's maxrss at its exec:
	// only a maxrss above this process's peak, read once the exec is done,
	// is surely the command's own.
	floor, _ := profile.PeakRSS(0) // 0 when unknown: nothing is reported
	floorKB := floor / 1024

	err = cmd.Wait()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && floorKB > 0 && ru.Maxrss > floorKB {
			c.PeakKB = ru.Maxrss // KiB on Linux
		}
	}
	// Kill what the command left behind in its group; its ends of the
	// pipes close with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	release()
	p.finish(h.cfg.WaitDelay)
	h.mu.Lock()
	delete(h.running, pgid)
	h.mu.Unlock()

	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &wire.TaskError{Kind: wire.ErrTimeout, Retryable: true, Stack: stderr.String(),
				Message: fmt.Sprintf("cmd:%s ran past its deadline; its process group was killed", c.Ref)}
		}
		return nil, &wire.TaskError{Kind: wire.ErrCancelled, Message: fmt.Sprintf("cmd:%s was cancelled", c.Ref)}
	}
	if rerr := p.inputError(); rerr != nil {
		// The command saw its input end early: whatever it printed is
		// about part of it.
		te := fn.Classify(rerr)
		if te.Kind == wire.ErrUser {
			te = &wire.TaskError{Kind: wire.ErrInternal, Retryable: true}
		}
		return nil, &wire.TaskError{Kind: te.Kind, Retryable: te.Retryable, Stack: stderr.String(),
			Message: fmt.Sprintf("cmd:%s: reading its input: %v", c.Ref, rerr)}
	}
	if err != nil {
		return nil, h.failure(c, cmd, err, stderr.String())
	}
	if stdout.over {
		return nil, &wire.TaskError{Kind: wire.ErrUser, Type: "OutputError",
			Message: fmt.Sprintf("cmd:%s wrote more than %d bytes to stdout", c.Ref, h.cfg.MaxOutput)}
	}
	v, err := Result(cmdSpec.Output, stdout.buf.Bytes())
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrUser, Type: "OutputError", Message: fmt.Sprintf("cmd:%s: %v", c.Ref, err)}
	}
	return v, nil
}

// oomMarks are what programs print when an allocation fails.
var oomMarks = []string{"MemoryError", "Cannot allocate memory", "out of memory", "Out of memory",
	"bad_alloc", "memory allocation of", "failed to allocate", "ENOMEM"}

func (h *Host) failure(c *fn.Call, cmd *exec.Cmd, err error, stderr string) *wire.TaskError {
	status := err.Error()
	var killed bool
	if cmd.ProcessState != nil {
		status = cmd.ProcessState.String()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			killed = true
		}
	}
	if c.MemoryMB > 0 {
		oom := killed
		for _, m := range oomMarks {
			oom = oom || strings.Contains(stderr, m)
		}
		if oom {
			return &wire.TaskError{Kind: wire.ErrOOM, Type: "MemoryError", Retryable: true, Stack: stderr,
				Message: fmt.Sprintf("cmd:%s exceeded runtime_memory (%d MB): %s", c.Ref, c.MemoryMB, status)}
		}
	}
	msg := fmt.Sprintf("cmd:%s: %s", c.Ref, status)
	if last := lastLine(stderr); last != "" {
		msg += ": " + last
	}
	return &wire.TaskError{Kind: wire.ErrUser, Type: "ExitError", Message: msg, Stack: stderr, Retryable: true}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// Result turns a command's stdout into a JSON value under mode.
func Result(mode Output, out []byte) (wire.Value, error) {
	switch mode {
	case OutputText:
		return marshalString(strings.TrimRight(string(out), "\r\n"))
	case OutputLines:
		s := strings.TrimSuffix(string(out), "\n")
		lines := []string{}
		if s != "" {
			lines = strings.Split(s, "\n")
		}
		for i, l := range lines {
			lines[i] = strings.TrimSuffix(l, "\r")
		}
		return json.Marshal(lines)
	}
	trimmed := bytes.TrimSpace(out)
	if json.Valid(trimmed) && len(trimmed) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, trimmed); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	if mode == OutputJSON {
		if len(trimmed) == 0 {
			return nil, errors.New("@json: the command printed nothing")
		}
		return nil, fmt.Errorf("@json: stdout is not valid JSON: %.80q", trimmed)
	}
	if len(trimmed) == 0 {
		return wire.Value("null"), nil
	}
	return marshalString(string(trimmed))
}

func marshalString(s string) (wire.Value, error) {
	return json.Marshal(s)
}

func nonNil(v []wire.Value) []wire.Value {
	if v == nil {
		return []wire.Value{}
	}
	return v
}

func nonNilMap(m map[string]wire.Value) map[string]wire.Value {
	if m == nil {
		return map[string]wire.Value{}
	}
	return m
}

// capped keeps up to max bytes and notes whether more came.
type capped struct {
	buf  bytes.Buffer
	max  int64
	over bool
}

func (w *capped) Write(p []byte) (int, error) {
	room := w.max - int64(w.buf.Len())
	if int64(len(p)) > room {
		w.over = true
		if room > 0 {
			w.buf.Write(p[:room])
		}
		return len(p), nil
	}
	w.buf.Write(p)
	return len(p), nil
}

// tail keeps the last max bytes.
type tail struct {
	b   []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }

// pipes are a command's standard streams. The host feeds stdin and drains
// stdout and stderr in goroutines of its own, so that the command's exit,
// not the pipes' closing, ends its Wait.
type pipes struct {
	inR, inW, outR, outW, errR, errW *os.File
	fed, drained                     chan struct{}
	// readErr is the error reading the command's input stopped on (not
	// the command's not reading it all); set before fed closes.
	readErr error
}

// errReader remembers the error its reader failed with.
type errReader struct {
	r   io.Reader
	err *error
}

func (e errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF {
		*e.err = err
	}
	return n, err
}

func newPipes() (*pipes, error) {
	p := &pipes{fed: make(chan struct{}), drained: make(chan struct{})}
	for _, ends := range [][2]**os.File{{&p.inR, &p.inW}, {&p.outR, &p.outW}, {&p.errR, &p.errW}} {
		r, w, err := os.Pipe()
		if err != nil {
			p.abort()
			return nil, fmt.Errorf("making pipes: %w", err)
		}
		*ends[0], *ends[1] = r, w
	}
	return p, nil
}

// abort closes every end: the command did not start.
func (p *pipes) abort() {
	for _, f := range []*os.File{p.inR, p.inW, p.outR, p.outW, p.errR, p.errW} {
		f.Close()
	}
}

// run closes the command's ends here (it holds its own copies) and starts
// feeding stdin and draining stdout and stderr.
func (p *pipes) run(stdin io.Reader, stdout, stderr io.Writer) {
	p.inR.Close()
	p.outW.Close()
	p.errW.Close()
	go func() {
		defer close(p.fed)
		// A command that does not read its input ends the copy with
		// EPIPE; one that has exited, by finish closing inW.
		_, _ = io.Copy(p.inW, errReader{stdin, &p.readErr})
		p.inW.Close()
	}()
	go func() {
		defer close(p.drained)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(stderr, p.errR)
		}()
		_, _ = io.Copy(stdout, p.outR)
		wg.Wait()
	}()
}

// finish waits, once the command's group has been killed, for its output
// to be read to the end. A process outside the group (setsid) may still
// hold the pipes: after wait, the output read so far is the output.
func (p *pipes) finish(wait time.Duration) {
	p.inW.Close() // unblocks a feed the command did not read
	select {
	case <-p.drained:
	case <-time.After(wait):
		p.outR.Close()
		p.errR.Close()
		<-p.drained
	}
	p.outR.Close()
	p.errR.Close()
	select {
	case <-p.fed:
	case <-time.After(wait):
		// Stuck reading its source (an object's body); the caller owns
		// that and ends it.
	}
}

// inputError is the error reading the command's input failed with, once
// finish has returned: nil when the input was read to its end, or the
// command stopped reading it. A feed still stuck counts as no error.
func (p *pipes) inputError() error {
	select {
	case <-p.fed:
		return p.readErr
	default:
		return nil
	}
}
