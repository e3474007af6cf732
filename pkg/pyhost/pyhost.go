package pyhost

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/fnproc"
	"github.com/skeinrun/skein/pkg/wire"
)

//go:embed host.py
var hostScript []byte

// Config configures a Host.
type Config struct {
	// Python is the interpreter: a path, or a name looked up on PATH.
	Python string
	// ScriptDir is where the embedded host script is written (once per
	// script version). Default: Proc's shared directory when functions
	// run as another user, else the user cache dir + "/skein/pyhost", or
	// the temp dir when there is none.
	ScriptDir string
	// Proc says what the interpreters start with: their environment
	// (never the runtime's whole environment), their user and
	// directories. Nil means fnproc.Default(): the clean environment, the
	// runtime's user.
	Proc *fnproc.Setup
	// Env holds extra KEY=VALUE entries for every interpreter, on top of
	// Proc's environment.
	Env []string
	// Logger receives the host's own messages and interpreter output that
	// falls between calls. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: python3 on PATH.
func DefaultConfig() Config {
	return Config{Python: "python3"}
}

func (c *Config) setDefaults() {
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.Proc == nil {
		c.Proc = fnproc.Default()
	}
	if c.ScriptDir == "" && c.Proc.SharedDir() != "" {
		c.ScriptDir = filepath.Join(c.Proc.SharedDir(), "pyhost")
	}
	if c.ScriptDir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			c.ScriptDir = filepath.Join(d, "skein", "pyhost")
		} else {
			c.ScriptDir = filepath.Join(os.TempDir(), "skein-pyhost")
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Python) == "" {
		errs = append(errs, errors.New("pyhost: Config.Python is empty"))
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("pyhost: Config.Env[%d] %q is not KEY=VALUE", i, kv))
		}
	}
	return errors.Join(errs...)
}

// Host runs Python callables in one long-lived interpreter per worker
// slot. It is safe for concurrent use; calls on the same slot are
// serialized.
type Host struct {
	cfg    Config
	found  string    // the interpreter found on PATH
	once   sync.Once // resolves python on first use
	python string
	script string
	log    *slog.Logger

	mu     sync.Mutex
	slots  map[int]*slot
	closed bool

	restarts atomic.Int64  // interpreters started on a slot that had one
	ids      atomic.Uint64 // numbers the calls (skip notices name them)
}

type slot struct {
	mu  sync.Mutex
	p   *proc
	had bool // an interpreter ran on this slot before
	// cur is p, for Close to kill without waiting for mu (a caller may
	// hold it while its request waits for room in the pipe).
	cur atomic.Pointer[proc]
}

// Restarts counts the interpreters started on a slot that had one before
// (it crashed, was killed at a deadline, or served other modules or
// another memory limit). For metrics.
func (h *Host) Restarts() int64 { return h.restarts.Load() }

var _ fn.Host = (*Host)(nil)

// ErrNoInterpreter is wrapped by New's error when the interpreter is not
// found (python3 not on PATH, or SKEIN_PYTHON naming nothing runnable): a
// runtime may then start without a Python host (see pkg/cli).
var ErrNoInterpreter = errors.New("no Python interpreter")

// New checks the configuration, finds the interpreter and writes the host
// script. No interpreter starts until the first call on a slot. An
// interpreter that cannot be found is an error wrapping ErrNoInterpreter.
func New(cfg Config) (*Host, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	py, err := cfg.Proc.LookPath(cfg.Python)
	if err != nil {
		return nil, fmt.Errorf("pyhost: python interpreter %q: %w: %w", cfg.Python, ErrNoInterpreter, err)
	}
	script, err := writeScript(cfg.ScriptDir)
	if err != nil {
		return nil, err
	}
	return &Host{cfg: cfg, found: py, script: script, log: cfg.Logger, slots: make(map[int]*slot)}, nil
}

// interpreter resolves the real executable once, on the first interpreter
// start, so that a runtime that never runs Python never pays for it.
func (h *Host) interpreter() string {
	h.once.Do(func() { h.python = realExecutable(h.found, h.cfg.Proc) })
	return h.python
}

// realExecutable asks the interpreter for sys.executable, so that a
// wrapper script on PATH (a pyenv or asdf shim, which can cost 100 ms and
// more per start) is paid once, not at every interpreter (re)start.
func realExecutable(py string, proc *fnproc.Setup) string {
	if isBinary(py) {
		// Not a wrapper: it is what sys.executable would say (a venv's
		// python is a link to a binary, run through the link), without
		// starting an interpreter to ask.
		return py
	}
	cmd := exec.Command(py, "-c", "import sys; print(sys.executable)")
	cmd.Env, cmd.SysProcAttr, cmd.Dir = proc.Env(), proc.SysProcAttr(), proc.WorkDir()
	out, err := cmd.Output()
	if err != nil {
		return py
	}
	exe := strings.TrimSpace(string(out))
	if st, err := os.Stat(exe); err != nil || st.IsDir() || !filepath.IsAbs(exe) {
		return py
	}
	return exe
}

// isBinary reports whether path (links followed) is an ELF or Mach-O
// executable rather than a script.
func isBinary(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return false
	}
	switch string(magic[:]) {
	case "\x7fELF", "\xcf\xfa\xed\xfe", "\xca\xfe\xba\xbe":
		return true
	}
	return false
}

// Executable returns the interpreter the host starts.
func (h *Host) Executable() string { return h.interpreter() }

// writeScript writes host.py under dir, named by its content hash, with
// an atomic rename so that concurrent runtimes never see half a file.
func writeScript(dir string) (string, error) {
	sum := sha256.Sum256(hostScript)
	path := filepath.Join(dir, "host-"+hex.EncodeToString(sum[:6])+".py")
	if b, err := os.ReadFile(path); err == nil && string(b) == string(hostScript) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("pyhost: script dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".host-*.py")
	if err != nil {
		return "", fmt.Errorf("pyhost: writing host script: %w", err)
	}
	_, werr := f.Write(hostScript)
	// Interpreters running as another user read it.
	merr := f.Chmod(0o644)
	cerr := f.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("pyhost: writing host script: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("pyhost: writing host script: %w", err)
	}
	return path, nil
}

// Call runs one attempt of c.Ref ("module:function", "module.function",
// or "@file" for a pickled callable) on c.Slot's interpreter, starting it
// if needed.
func (h *Host) Call(ctx context.Context, c *fn.Call) (wire.Value, error) {
	if err := checkCall(c); err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: err.Error()}
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Message: "pyhost: host is closed", Retryable: true}
	}
	s := h.slots[c.Slot]
	if s == nil {
		s = &slot{}
		h.slots[c.Slot] = s
	}
	h.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return nil, ctxError(c.Ref, err)
	}
	id := h.ids.Add(1)
	frame, err := encodeRequest(ctx, id, c)
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: "pyhost: encoding arguments: " + err.Error()}
	}
	for fresh := false; ; {
		if err := ctx.Err(); err != nil {
			return nil, ctxError(c.Ref, err)
		}
		p, f, err := h.send(ctx, s, id, c, frame)
		if err != nil {
			return nil, err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			if p.abandon(f) {
				return nil, ctxError(c.Ref, ctx.Err())
			}
		}
		if !f.resend {
			return f.res, f.err
		}
		if f.restart {
			if fresh {
				// A fresh interpreter started in the call's dir never asks.
				return nil, &wire.TaskError{Kind: wire.ErrInternal, Retryable: true, Message: errRestart.Error()}
			}
			fresh = true
		}
	}
}

// send sends c to the slot's interpreter, behind the calls it runs or was
// sent, starting one if the slot has none that can take it. An
// interpreter serves one memory limit (set before any user code runs). It
// serves a call of another job's modules dir if that cannot change what
// the call sees (host.py checks that every module it imported is the same
// file there); else it answers "restart" and the call is sent again, to a
// fresh one. An interpreter that cannot take c (another memory limit, a
// restart asked, a crash) is replaced once the calls sent to it are
// settled.
func (h *Host) send(ctx context.Context, s *slot, id uint64, c *fn.Call, frame []byte) (*proc, *inflight, error) {
	s.mu.Lock()
	var p *proc
	for {
		h.mu.Lock()
		closed := h.closed
		h.mu.Unlock()
		if closed {
			s.mu.Unlock()
			return nil, nil, &wire.TaskError{Kind: wire.ErrInternal, Message: "pyhost: host is closed", Retryable: true}
		}
		if s.p == nil {
			if s.had {
				h.restarts.Add(1)
			}
			np, err := h.start(ctx, c)
			if err != nil {
				s.mu.Unlock()
				return nil, nil, err
			}
			s.p, s.had = np, true
			s.cur.Store(np)
		}
		p = s.p
		p.qmu.Lock()
		if p.takes(c) {
			break
		}
		if len(p.queue) > 0 {
			// Wait for the calls sent to it to settle, without holding
			// the slot (Close kills through it).
			s.mu.Unlock()
			p.drained.Wait()
			p.qmu.Unlock()
			s.mu.Lock()
			continue
		}
		p.qmu.Unlock()
		p.stop()
		if s.p == p {
			s.p = nil
		}
	}
	f := &inflight{id: id, c: c, sink: newSink(c.Log), done: make(chan struct{}), exclusive: c.Obj != nil}
	if c.Obj != nil {
		f.body = c.Obj.Body
		if f.body == nil {
			f.body = strings.NewReader("")
		}
	}
	p.enqueue(f)
	// Frames go out in the order of the queue, and a skip notice for f
	// after f: take the writer before letting anyone in.
	p.wmu.Lock()
	p.qmu.Unlock()
	s.mu.Unlock()
	err := p.writeFrame(frame)
	p.wmu.Unlock()
	if err != nil {
		// The interpreter is gone or going: serve settles f.
		p.kill()
	}
	return p, f, nil
}

func checkCall(c *fn.Call) error {
	ref := c.Ref
	if ref == "" {
		return errors.New("pyhost: empty function reference")
	}
	if strings.ContainsFunc(ref, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("pyhost: function reference %q contains spaces or control characters", ref)
	}
	if file, ok := strings.CutPrefix(ref, "@"); ok {
		// A pickled callable: a file among the job's shipped modules.
		if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return fmt.Errorf("pyhost: pickled callable %q must name a file of the job's shipped modules", ref)
		}
		if c.ModulesDir == "" {
			return fmt.Errorf("pyhost: py:%s names a pickled callable, but the job ships no modules", ref)
		}
	} else if !strings.ContainsAny(ref, ":.") {
		return fmt.Errorf("pyhost: function reference %q is not module:function, module.function or @file", ref)
	}
	if c.Slot < 0 {
		return fmt.Errorf("pyhost: negative slot %d", c.Slot)
	}
	if c.MemoryMB < 0 {
		return fmt.Errorf("pyhost: negative memory limit %d MB", c.MemoryMB)
	}
	if c.ModulesDir != "" && !filepath.IsAbs(c.ModulesDir) {
		return fmt.Errorf("pyhost: modules dir %q is not absolute", c.ModulesDir)
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("pyhost: bad environment variable name %q", k)
		}
	}
	return nil
}

func ctxError(ref string, err error) *wire.TaskError {
	if errors.Is(err, context.DeadlineExceeded) {
		return &wire.TaskError{Kind: wire.ErrTimeout, Message: fmt.Sprintf("py:%s ran past its deadline; its interpreter was killed", ref), Retryable: true}
	}
	return &wire.TaskError{Kind: wire.ErrCancelled, Message: fmt.Sprintf("py:%s was cancelled", ref)}
}

// Close kills every interpreter. Calls after Close fail.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	slots := h.slots
	h.slots = map[int]*slot{}
	h.mu.Unlock()
	for _, s := range slots {
		if p := s.cur.Load(); p != nil {
			p.kill()
		}
		s.mu.Lock()
		if s.p != nil {
			s.p.stop()
			s.p = nil
		}
		s.mu.Unlock()
	}
	return nil
}

// logWriter forwards interpreter output outside of calls to the logger.
type logWriter struct {
	log  *slog.Logger
	slot int
}

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug("python host output outside a call", "slot", w.slot, "text", string(p))
	return len(p), nil
}

var _ io.Writer = logWriter{}

// slotQueued counts the calls sent to slot's interpreter and not settled
// (for tests).
func (h *Host) slotQueued(slot int) int {
	h.mu.Lock()
	s := h.slots[slot]
	h.mu.Unlock()
	if s == nil {
		return 0
	}
	p := s.cur.Load()
	if p == nil {
		return 0
	}
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return len(p.queue)
}

// Pipelines reports that calls on one slot may be made concurrently:
// they are sent to the slot's interpreter at once and run there in order
// (the runtime uses it for short calls).
func (h *Host) Pipelines() bool { return true }

// Prestart starts the interpreters of slots 0 to n-1 that have none, at
// once and side by side, for calls without a memory limit (a call with
// one replaces its slot's), and returns when they are up. A runtime that
// is about to serve Python calls (serve --embedded) calls it at its start,
// so that its first job does not wait for the interpreters; they move to
// the job's shipped modules like a warm interpreter does. Failures are
// logged: the slot's first call starts one again.
func (h *Host) Prestart(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			break
		}
		s := h.slots[i]
		if s == nil {
			s = &slot{}
			h.slots[i] = s
		}
		h.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.mu.Lock()
			defer s.mu.Unlock()
			h.mu.Lock()
			closed := h.closed
			h.mu.Unlock()
			if closed || s.p != nil {
				return
			}
			p, err := h.start(ctx, &fn.Call{Slot: i})
			if err != nil {
				h.log.Debug("python host: starting an interpreter ahead of calls", "slot", i, "err", err)
				return
			}
			s.p, s.had = p, true
			s.cur.Store(p)
		}()
	}
	wg.Wait()
}
