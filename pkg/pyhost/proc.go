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
	"sync"
	"syscall"
	"time"

	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/fnproc"
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
	cmd     *exec.Cmd
	pid     int
	req     *os.File      // our end of the child's fd 3
	respF   *os.File      // our end of the child's fd 4
	resp    *bufio.Reader // over respF
	out     *output
	exited  chan struct{} // closed when the child is reaped
	waitErr error
	memMB   int
	idle    io.Writer

	wmu   sync.Mutex // serializes frames to the interpreter
	chunk []byte     // buffer of chunk reads (serve's)

	qmu      sync.Mutex
	drained  *sync.Cond  // on qmu: the queue got shorter
	queue    []*inflight // calls sent, in order, not settled
	retiring bool        // takes no more calls: stopped once its queue is empty
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
		out: newOutput(idle), exited: make(chan struct{}), memMB: c.MemoryMB, idle: idle,
	}
	p.drained = sync.NewCond(&p.qmu)
	release, gerr := fnproc.Guard(p.pid)
	if gerr != nil {
		h.log.Warn("pyhost: the interpreter's subprocesses may outlive this runtime should it be killed", "err", gerr)
	}
	go p.out.run(outR)
	go func() {
		p.waitErr = cmd.Wait()
		// What the interpreter left behind in its group goes with it.
		p.kill()
		release()
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
	go p.serve()
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

// encodeRequest is c's request frame: the JSON of a request, written by
// hand (json.Marshal of the struct cost about 3 µs a call, most of it
// compacting arguments that are JSON already; they are checked with
// json.Valid instead).
func encodeRequest(ctx context.Context, id uint64, c *fn.Call) ([]byte, error) {
	n := 96 + len(c.Ref) + len(c.ModulesDir)
	for _, a := range c.Args {
		n += len(a) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"ref":`...)
	b = appendString(b, c.Ref)
	b = append(b, `,"path":`...)
	b = appendString(b, c.ModulesDir)
	b = append(b, `,"args":[`...)
	for i, a := range c.Args {
		if i > 0 {
			b = append(b, ',')
		}
		if !json.Valid(a) {
			return nil, fmt.Errorf("argument %d is not JSON", i)
		}
		b = append(b, a...)
	}
	b = append(b, `],"kwargs":{`...)
	first := true
	for k, v := range c.Kwargs {
		if !json.Valid(v) {
			return nil, fmt.Errorf("argument %s is not JSON", k)
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
		b = append(b, v...)
	}
	b = append(b, '}')
	if c.Obj != nil {
		o, err := json.Marshal(c.Obj.Object)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"obj":`...)
		b = append(b, o...)
	}
	if len(c.Env) > 0 {
		e, err := json.Marshal(c.Env)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"env":`...)
		b = append(b, e...)
	}
	if d, ok := ctx.Deadline(); ok {
		b = append(b, `,"deadline":`...)
		b = strconv.AppendInt(b, d.UnixNano(), 10)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// inflight is a call sent to an interpreter, until its outcome.
type inflight struct {
	id        uint64
	c         *fn.Call
	sink      *sink
	exclusive bool      // reads its chunk: nothing else is sent while it is pending
	body      io.Reader // its chunk's bytes, for the interpreter's reads
	bodyErr   error

	done chan struct{} // closed once the fields below are set
	res  wire.Value
	err  error
	// resend: the call never started in this interpreter (it died, was
	// killed, or cannot serve the call's modules dir); send it again.
	resend  bool
	restart bool // resend because of a "restart" answer
	// abandoned: its caller's context ended and the caller returned.
	abandoned bool
}

// takes reports whether p can be sent c now, behind what it runs. p.qmu
// is held.
func (p *proc) takes(c *fn.Call) bool {
	if p.retiring || p.exitedNow() || p.memMB != c.MemoryMB {
		return false
	}
	if len(p.queue) == 0 {
		return true
	}
	// A call that reads its chunk trades frames with the interpreter while
	// it runs, so it is sent alone.
	return c.Obj == nil && !p.queue[0].exclusive
}

// enqueue adds f to p's calls in the order they are sent. p.qmu is held.
func (p *proc) enqueue(f *inflight) {
	p.queue = append(p.queue, f)
	p.out.push(f.sink)
}

// abandon is called when f's caller gives up (its context ended). The
// call running is killed now. A call queued behind it is told to skip (a
// notice the interpreter reads before it starts a call); if it comes up
// and does not answer at once (the notice came too late), serve kills
// it. It returns false if f's outcome is already known.
func (p *proc) abandon(f *inflight) bool {
	p.qmu.Lock()
	select {
	case <-f.done:
		p.qmu.Unlock()
		return false
	default:
	}
	f.abandoned = true
	if len(p.queue) > 0 && p.queue[0] == f {
		p.retiring = true
		p.kill()
		p.qmu.Unlock()
		return true
	}
	p.qmu.Unlock()
	p.wmu.Lock()
	_ = p.writeFrame([]byte(`{"op":"skip","id":` + strconv.FormatUint(f.id, 10) + `}`))
	p.wmu.Unlock()
	return true
}

// skipWait bounds how long a call whose caller gave up while it was
// queued may take to come up and answer "skipped" before its interpreter
// is killed: the interpreter answers at once when it saw the notice.
const skipWait = 200 * time.Millisecond

// serve reads the interpreter's replies and settles the calls sent to
// it, in order, until the interpreter ends; then it settles what is left.
func (p *proc) serve() {
	timer := time.NewTimer(syncWait)
	timer.Stop()
	for {
		b, err := p.readFrame()
		if err != nil {
			p.fail(err)
			return
		}
		p.qmu.Lock()
		var f *inflight
		if len(p.queue) > 0 {
			f = p.queue[0]
		}
		p.qmu.Unlock()
		if f == nil {
			p.kill()
			p.fail(errors.New("a reply to no call"))
			return
		}
		var rep reply
		if r, ok := okResult(b); ok {
			rep.OK, rep.Result = true, r
		} else if err := json.Unmarshal(b, &rep); err != nil {
			p.kill()
			p.fail(fmt.Errorf("malformed reply: %w", err))
			return
		}
		if rep.Op == "read" {
			if err := p.sendChunk(f, rep.N); err != nil {
				p.kill()
				p.fail(err)
				return
			}
			continue
		}
		// Wait until all the output of this call has reached its Log.
		select {
		case <-f.sink.synced:
		case <-p.out.done:
		default:
			timer.Reset(syncWait)
			select {
			case <-f.sink.synced:
			case <-p.out.done:
			case <-timer.C:
			}
			timer.Stop()
		}
		p.settle(f, &rep)
	}
}

// sendChunk answers f's read of up to n bytes of its chunk (an empty
// frame at its end).
func (p *proc) sendChunk(f *inflight, n int) error {
	n = min(max(n, 1), maxRead)
	if p.chunk == nil {
		p.chunk = make([]byte, maxRead)
	}
	var m int
	if f.body != nil && f.bodyErr == nil {
		var err error
		m, err = io.ReadFull(f.body, p.chunk[:n])
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		if err != nil {
			f.bodyErr = err
			m = 0
		}
		if m == 0 {
			f.body = nil
		}
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.writeFrame(p.chunk[:m]); err != nil {
		return fmt.Errorf("sending chunk bytes: %w", err)
	}
	return nil
}

// settle sets the outcome of f, the first call pending, from its reply.
func (p *proc) settle(f *inflight, rep *reply) {
	c := f.c
	p.qmu.Lock()
	defer p.qmu.Unlock()
	p.queue[0] = nil
	p.queue = p.queue[1:]
	switch {
	case f.bodyErr != nil:
		f.err = &wire.TaskError{Kind: wire.ErrInternal, Retryable: true,
			Message: fmt.Sprintf("pyhost: reading the chunk of %s for py:%s: %v", c.Obj.URL, c.Ref, f.bodyErr)}
	case rep.OK:
		if len(rep.Result) == 0 {
			rep.Result = wire.Value("null")
		}
		f.res = rep.Result
	case rep.Kind == kindRestart:
		// The interpreter cannot serve this call's modules dir; it ran
		// nothing of the call. The calls sent behind it run here if they
		// can; then the slot gets a fresh interpreter.
		f.resend, f.restart = true, true
		p.retiring = true
	case rep.Kind == kindExpired:
		f.err = ctxError(c.Ref, context.DeadlineExceeded)
	case rep.Kind == kindSkipped:
		f.err = ctxError(c.Ref, context.Canceled)
	default:
		te := &wire.TaskError{Kind: rep.Kind, Type: rep.Type, Message: rep.Message, Stack: rep.Stack, Retryable: rep.Retryable}
		if te.Kind == "" {
			te.Kind = wire.ErrUser
		}
		if te.Kind == wire.ErrOOM {
			te.Message = fmt.Sprintf("py:%s exceeded runtime_memory (%d MB): %s", c.Ref, c.MemoryMB, te.Message)
			// A fresh interpreter for the next calls.
			p.retiring = true
		}
		f.err = te
	}
	close(f.done)
	// A call whose caller gave up while it was queued may start now: it
	// must not run (or not for long).
	if len(p.queue) > 0 && p.queue[0].abandoned {
		next := p.queue[0]
		time.AfterFunc(skipWait, func() {
			p.qmu.Lock()
			defer p.qmu.Unlock()
			if len(p.queue) > 0 && p.queue[0] == next {
				p.retiring = true
				p.kill()
			}
		})
	}
	p.drained.Broadcast()
}

// fail settles every call pending when the interpreter ended or broke the
// protocol: the first one was running (it gets the crash, unless its
// caller gave up on it and had it killed), the others never started and
// are sent again to a fresh interpreter.
func (p *proc) fail(ioErr error) {
	p.qmu.Lock()
	p.retiring = true
	q := p.queue
	p.qmu.Unlock()
	var headErr error
	if len(q) > 0 && !q[0].abandoned {
		headErr = p.crashed(q[0].c, ioErr)
	} else {
		// Reap it before a fresh one starts in its place.
		p.kill()
		<-p.exited
	}
	p.qmu.Lock()
	defer p.qmu.Unlock()
	for i, f := range p.queue {
		if i == 0 && headErr != nil {
			f.err = headErr
		} else if !f.abandoned {
			f.resend = true
		}
		close(f.done)
	}
	p.queue = nil
	p.drained.Broadcast()
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
// switch to (another version of a module it imported); kindExpired to a
// call that reached it after its deadline (it did not start).
const (
	kindRestart = "restart"
	kindExpired = "expired"
	kindSkipped = "skipped"
)

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
