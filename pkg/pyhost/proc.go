package pyhost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

const (
	maxFrame = 1 << 30
	// maxRead caps one chunk frame (host.py asks for READ_CHUNK).
	maxRead = 1 << 20
	// syncWait bounds the wait for a call's output after its reply.
	syncWait = 2 * time.Second
)

// proc is one live interpreter.
type proc struct {
	cmd        *exec.Cmd
	pid        int
	req        *os.File      // our end of the child's fd 3
	respF      *os.File      // our end of the child's fd 4
	resp       *bufio.Reader // over respF
	out        *output
	exited     chan struct{} // closed when the child is reaped
	waitErr    error
	modulesDir string
	memMB      int
	idle       io.Writer
}

func (h *Host) start(ctx context.Context, c *fn.Call) (*proc, *wire.TaskError) {
	h.interpreter()
	fail := func(err error) (*proc, *wire.TaskError) {
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Message: "pyhost: starting " + h.python + ": " + err.Error(), Retryable: true}
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return fail(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		respR.Close()
		respW.Close()
		return fail(err)
	}
	cmd := exec.Command(h.python, h.script)
	cmd.Env = append(h.cfg.Proc.Env(), h.cfg.Env...)
	cmd.Env = append(cmd.Env, "PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8",
		"SKEIN_PYHOST_MEMORY_MB="+strconv.Itoa(c.MemoryMB), "SKEIN_PYHOST_PATH="+c.ModulesDir)
	cmd.Dir = h.cfg.Proc.WorkDir()
	if c.ModulesDir != "" {
		cmd.Dir = c.ModulesDir
	}
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{reqR, respW} // fd 3, fd 4
	cmd.SysProcAttr = h.cfg.Proc.SysProcAttr()
	err = cmd.Start()
	// The child holds its own copies now.
	reqR.Close()
	respW.Close()
	outW.Close()
	if err != nil {
		reqW.Close()
		respR.Close()
		outR.Close()
		return fail(err)
	}
	idle := logWriter{log: h.log, slot: c.Slot}
	p := &proc{
		cmd: cmd, pid: cmd.Process.Pid, req: reqW, respF: respR, resp: bufio.NewReaderSize(respR, 64<<10),
		out: newOutput(idle), exited: make(chan struct{}), modulesDir: c.ModulesDir, memMB: c.MemoryMB, idle: idle,
	}
	go p.out.run(outR)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	h.log.Debug("python host started", "slot", c.Slot, "pid", p.pid, "memory_mb", c.MemoryMB, "modules", c.ModulesDir)

	var ready struct {
		Op     string `json:"op"`
		Python string `json:"python"`
	}
	err = p.do(ctx, func() error {
		b, err := p.readFrame()
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &ready)
	})
	if err == nil && ready.Op != "ready" {
		err = fmt.Errorf("unexpected first frame %q", ready.Op)
	}
	if err != nil {
		p.stop()
		if ctx.Err() != nil {
			return nil, ctxError(c.Ref, ctx.Err())
		}
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Retryable: true,
			Message: fmt.Sprintf("pyhost: interpreter %s did not start: %v", h.python, err),
			Stack:   p.out.Tail()}
	}
	return p, nil
}

// do runs f (I/O with the child) and kills the child if ctx ends first.
func (p *proc) do(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		p.kill()
		// Closing our ends unblocks f even if a grandchild holds the pipes.
		p.req.Close()
		p.respF.Close()
		<-done
		return ctx.Err()
	}
}

func (p *proc) kill() {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
}

// stop kills the interpreter's process group and reaps it.
func (p *proc) stop() {
	p.kill()
	p.req.Close()
	p.respF.Close()
	<-p.exited
}

func (p *proc) exitedNow() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *proc) readFrame() ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(p.resp, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes is too large", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(p.resp, b); err != nil {
		return nil, fmt.Errorf("reply cut short: %w", err)
	}
	return b, nil
}

func (p *proc) writeFrame(b []byte) error {
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err := p.req.Write(buf)
	return err
}

type request struct {
	Ref string `json:"ref"`
	// Path is the call's modules dir: an interpreter started for another
	// one switches to it when that is safe, or answers kind "restart".
	Path   string                `json:"path"`
	Args   []wire.Value          `json:"args"`
	Kwargs map[string]wire.Value `json:"kwargs"`
	Obj    *wire.Object          `json:"obj,omitempty"`
	Env    map[string]string     `json:"env,omitempty"`
}

type reply struct {
	Op        string         `json:"op"`
	N         int            `json:"n"`
	OK        bool           `json:"ok"`
	Result    wire.Value     `json:"result"`
	Kind      wire.ErrorKind `json:"kind"`
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Stack     string         `json:"stack"`
	Retryable bool           `json:"retryable"`
}

// call runs one call. keep is false when the interpreter must not serve
// another call (it died, was killed, or ran out of memory).
func (p *proc) call(ctx context.Context, c *fn.Call) (res wire.Value, err error, keep bool) {
	req := request{Ref: c.Ref, Path: c.ModulesDir, Args: c.Args, Kwargs: c.Kwargs, Env: c.Env}
	if req.Args == nil {
		req.Args = []wire.Value{}
	}
	if req.Kwargs == nil {
		req.Kwargs = map[string]wire.Value{}
	}
	var body io.Reader
	if c.Obj != nil {
		o := c.Obj.Object
		req.Obj = &o
		body = c.Obj.Body
		if body == nil {
			body = strings.NewReader("")
		}
	}
	frame, merr := json.Marshal(req)
	if merr != nil {
		return nil, &wire.TaskError{Kind: wire.ErrBadInput, Message: "pyhost: encoding arguments: " + merr.Error()}, true
	}
	logw := c.Log
	if logw == nil {
		logw = io.Discard
	}
	p.out.drain()
	p.out.setSink(logw)
	defer p.out.setSink(p.idle)

	var rep reply
	var bodyErr error
	ioErr := p.do(ctx, func() error {
		if err := p.writeFrame(frame); err != nil {
			return fmt.Errorf("sending the call: %w", err)
		}
		var buf []byte // allocated at the first read of the chunk
		for {
			b, err := p.readFrame()
			if err != nil {
				return err
			}
			rep = reply{}
			if r, ok := okResult(b); ok {
				rep.OK, rep.Result = true, r
				return nil
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				return fmt.Errorf("malformed reply: %w", err)
			}
			if rep.Op != "read" {
				return nil
			}
			// The function reads its chunk: send up to n bytes, or an
			// empty frame at the end.
			if buf == nil {
				buf = make([]byte, maxRead)
			}
			n := min(max(rep.N, 1), maxRead)
			var m int
			if body != nil && bodyErr == nil {
				m, err = io.ReadFull(body, buf[:n])
				if err == io.ErrUnexpectedEOF || err == io.EOF {
					err = nil
				}
				if err != nil {
					bodyErr = err
					m = 0
				}
				if m == 0 {
					body = nil
				}
			}
			if err := p.writeFrame(buf[:m]); err != nil {
				return fmt.Errorf("sending chunk bytes: %w", err)
			}
		}
	})
	if ioErr != nil {
		if ctx.Err() != nil {
			return nil, ctxError(c.Ref, ctx.Err()), false
		}
		return nil, p.crashed(c, ioErr), false
	}
	// Wait until all the output of this call has reached c.Log.
	select {
	case <-p.out.synced:
	case <-p.out.done:
	case <-time.After(syncWait):
	}
	if bodyErr != nil {
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Retryable: true,
			Message: fmt.Sprintf("pyhost: reading the chunk of %s for py:%s: %v", c.Obj.URL, c.Ref, bodyErr)}, true
	}
	if !rep.OK && rep.Kind == kindRestart {
		// The interpreter cannot serve this call's modules dir; it ran
		// nothing of the call.
		return nil, errRestart, false
	}
	p.modulesDir = c.ModulesDir
	if rep.OK {
		if len(rep.Result) == 0 {
			rep.Result = wire.Value("null")
		}
		return rep.Result, nil, true
	}
	te := &wire.TaskError{Kind: rep.Kind, Type: rep.Type, Message: rep.Message, Stack: rep.Stack, Retryable: rep.Retryable}
	if te.Kind == "" {
		te.Kind = wire.ErrUser
	}
	if te.Kind == wire.ErrOOM {
		te.Message = fmt.Sprintf("py:%s exceeded runtime_memory (%d MB): %s", c.Ref, c.MemoryMB, te.Message)
		// A fresh interpreter for the next call.
		return nil, te, false
	}
	return nil, te, true
}

// okPrefix starts host.py's reply to a call that returned: the result
// follows as JSON text (json.dumps), then "}".
var okPrefix = []byte(`{"ok":true,"result":`)

// okResult returns the result of such a reply without decoding it (most
// replies; a generic JSON decode of each cost about 5 µs a call).
func okResult(b []byte) (wire.Value, bool) {
	if !bytes.HasPrefix(b, okPrefix) || len(b) < len(okPrefix)+2 || b[len(b)-1] != '}' {
		return nil, false
	}
	return wire.Value(b[len(okPrefix) : len(b)-1]), true
}

// kindRestart is host.py's answer to a call whose modules dir it cannot
// switch to (another version of a module it imported).
const kindRestart = "restart"

// errRestart: the call must run in a fresh interpreter (Host.Call does).
var errRestart = errors.New("pyhost: the interpreter cannot switch to the call's modules dir")

// crashed classifies an interpreter that died or broke the protocol during
// a call.
func (p *proc) crashed(c *fn.Call, ioErr error) *wire.TaskError {
	weKilled := false
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
		weKilled = true
		p.kill()
		<-p.exited
	}
	select {
	case <-p.out.done:
	case <-time.After(time.Second):
	}
	tail := p.out.Tail()
	status := "still running"
	signaled := false
	if p.cmd.ProcessState != nil {
		status = p.cmd.ProcessState.String()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			signaled = true
		}
	}
	if c.MemoryMB > 0 && (strings.Contains(tail, "MemoryError") || strings.Contains(tail, "Cannot allocate memory") ||
		strings.Contains(tail, "out of memory") || (signaled && !weKilled)) {
		return &wire.TaskError{Kind: wire.ErrOOM, Type: "MemoryError", Retryable: true, Stack: tail,
			Message: fmt.Sprintf("py:%s exceeded runtime_memory (%d MB): interpreter %s", c.Ref, c.MemoryMB, status)}
	}
	if errors.Is(ioErr, io.EOF) || errors.Is(ioErr, io.ErrUnexpectedEOF) || errors.Is(ioErr, syscall.EPIPE) {
		return &wire.TaskError{Kind: wire.ErrUser, Type: "HostExit", Retryable: true, Stack: tail,
			Message: fmt.Sprintf("py:%s: the python interpreter exited during the call (%s)", c.Ref, status)}
	}
	return &wire.TaskError{Kind: wire.ErrInternal, Retryable: true, Stack: tail,
		Message: fmt.Sprintf("pyhost: protocol error in py:%s: %v (interpreter %s)", c.Ref, ioErr, status)}
}
