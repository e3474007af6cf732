// Package proxytest is a stand-in, for tests, for the actionloop proxy of
// apache/openwhisk-runtime-go: the /bin/proxy of the action-golang images
// behind OpenWhisk's go:1.x kinds, which answers the invoker's /init and
// /run and drives the action's "exec" program over stdin and descriptor 3.
//
// It is written from the upstream source (openwhisk/ package at commit
// 1b0015169b78, proxy version 1.17.1), not copied from it, and follows it
// byte for byte where a program under test can tell:
//
//   - actionProxy.go SetEnv: exec's environment is only
//     __OW_PROXY_VERSION, __OW_EXECUTION_ENV (from OW_EXECUTION_ENV),
//     __OW_WAIT_FOR_ACK (from OW_WAIT_FOR_ACK), every __OW_* variable of
//     the proxy's own environment, and the /init env (strings as they
//     are, other values as JSON). No PATH, no HOME.
//   - initHandler.go: a second /init is 403 "Cannot initialize the action
//     more than once."; a body that is not JSON 400 "Error unmarshaling
//     request: ..."; empty code 403 "Missing main/no code to execute.";
//     binary code is base64; bad base64 400. The code is unzipped (or
//     written as the file "exec") under <dir>/<n>/src, which becomes
//     <n>/bin when it holds an executable (ELF or #!) "exec" (the
//     stand-in has no compiler: source code fails as the compiler would,
//     502). sendOK answers {"ok":true}\n with Content-Length.
//   - actionProxy.go StartLatestAction: with OW_EXECUTION_ENV set, bin/
//     exec.env must hold it (trimmed) or /init fails (502); exec is
//     chmod 0755 and started with the first of ExtraFiles, so descriptor
//     3, as the write end of the result pipe.
//   - executor.go Start: with OW_WAIT_FOR_ACK set, wait for one line
//     {"ok":true} on descriptor 3 ("The action did not initialize
//     properly." when ok is false; "Command exited abruptly during
//     initialization." when exec exits first); without it, only check
//     that exec is still running 5 ms later ("command exited").
//     OW_LOG_INIT_ERROR set: init errors go to stderr, followed by the
//     end markers, and the answer says "Cannot start action. Check logs
//     for details." (or "The action failed to generate or locate a
//     binary. See logs for details.").
//   - runHandler.go / executor.go Interact: no action yet is 500 "no
//     action defined yet", an exited one 500 "command exited"; newlines
//     are removed from the /run body, which is written to exec's stdin
//     with one "\n"; one line is read from descriptor 3; then the proxy
//     writes XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n on exec's stdout and
//     stderr (its own). exec gone before answering: 400 "command exited"
//     and the action is dropped. An answer that is neither a JSON object
//     nor an array: 502 "The action did not return a dictionary or
//     array."; otherwise 200 with the line as it came (newline included).
//   - The proxy serves only /init and /run; any other path gets an empty
//     200, as upstream's ServeHTTP writes nothing.
//
// Not mirrored: the compiler (OW_COMPILER), jar and tar.gz code, the
// debug mode, and re-initialisation when debugging.
package proxytest

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Version is the upstream proxy version mirrored (__OW_PROXY_VERSION).
const Version = "1.17.1"

// OutputGuard is the end-of-activation marker the proxy writes.
const OutputGuard = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"

// Config is what the runtime image gives the proxy: its directory and
// the OW_* variables of its Dockerfile.
type Config struct {
	// Dir is the proxy's action directory (upstream: ./action).
	Dir string
	// WaitForAck is OW_WAIT_FOR_ACK ("1" in the action-golang images).
	WaitForAck string
	// ExecutionEnv is OW_EXECUTION_ENV (action-golang-v1.24 images:
	// "openwhisk/action-golang-v1.24").
	ExecutionEnv string
	// LogInitError is OW_LOG_INIT_ERROR (set in the action-golang images).
	LogInitError bool
	// Environ is the proxy's own environment, whose __OW_* variables are
	// passed to exec (the container's environment: the invoker sets
	// none there, so usually empty).
	Environ []string
	// Stdout and Stderr are the proxy's own (the container's log
	// streams): exec writes to them directly, and so does the proxy's
	// end marker, in the order they happen.
	Stdout, Stderr *os.File
}

// Proxy is one action container's proxy. It is an http.Handler.
type Proxy struct {
	cfg Config

	mu          sync.Mutex // one request at a time
	initialized bool
	current     int
	env         map[string]string

	exMu sync.Mutex // guards ex, so that Stop never waits for a /run
	ex   *executor
}

func (p *Proxy) executor() *executor {
	p.exMu.Lock()
	defer p.exMu.Unlock()
	return p.ex
}

func (p *Proxy) setExecutor(ex *executor) {
	p.exMu.Lock()
	p.ex = ex
	p.exMu.Unlock()
}

// New returns a proxy with cfg.
func New(cfg Config) *Proxy {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	_ = os.MkdirAll(cfg.Dir, 0o755)
	return &Proxy{cfg: cfg, env: map[string]string{}}
}

// Close waits for the request in progress, if any, then kills the
// action's process. Serve no more requests before calling it.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Stop()
}

// Stop kills the action's process, if any, without waiting for the
// request in progress (a /run then fails as when exec dies).
func (p *Proxy) Stop() {
	p.exMu.Lock()
	ex := p.ex
	p.ex = nil
	p.exMu.Unlock()
	if ex != nil {
		ex.stop()
	}
}

// ServeHTTP routes /init and /run; other paths get an empty 200.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Upstream handles one request at a time per container (the invoker
	// never overlaps them with concurrency 1); so does the stand-in.
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.URL.Path {
	case "/init":
		p.init(w, r)
	case "/run":
		p.run(w, r)
	}
}

func sendError(w http.ResponseWriter, code int, cause string) {
	b, _ := json.Marshal(map[string]string{"error": cause})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}

func sendOK(w http.ResponseWriter) {
	buf := []byte("{\"ok\":true}\n")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(buf)))
	_, _ = w.Write(buf)
}

func (p *Proxy) init(w http.ResponseWriter, r *http.Request) {
	if p.initialized {
		sendError(w, http.StatusForbidden, "Cannot initialize the action more than once.")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sendError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req struct {
		Value struct {
			Code   string         `json:"code,omitempty"`
			Binary bool           `json:"binary,omitempty"`
			Main   string         `json:"main,omitempty"`
			Env    map[string]any `json:"env,omitempty"`
		} `json:"value,omitempty"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		sendError(w, http.StatusBadRequest, fmt.Sprintf("Error unmarshaling request: %v", err))
		return
	}
	if req.Value.Code == "" {
		sendError(w, http.StatusForbidden, "Missing main/no code to execute.")
		return
	}
	p.setEnv(req.Value.Env)
	buf := []byte(req.Value.Code)
	if req.Value.Binary {
		if buf, err = base64.StdEncoding.DecodeString(req.Value.Code); err != nil {
			sendError(w, http.StatusBadRequest, "cannot decode the request: "+err.Error())
			return
		}
	}
	if err := p.extract(buf); err != nil {
		p.initError(w, err, "The action failed to generate or locate a binary. See logs for details.")
		return
	}
	if err := p.startLatest(); err != nil {
		p.initError(w, fmt.Errorf("cannot start action: %w", err), "Cannot start action. Check logs for details.")
		return
	}
	p.initialized = true
	sendOK(w)
}

// initError answers a failed /init as upstream does with and without
// OW_LOG_INIT_ERROR.
func (p *Proxy) initError(w http.ResponseWriter, err error, logged string) {
	if !p.cfg.LogInitError {
		sendError(w, http.StatusBadGateway, err.Error())
		return
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "cannot start action: ")
	_, _ = p.cfg.Stderr.WriteString(msg + "\n")
	_, _ = p.cfg.Stdout.WriteString(OutputGuard)
	_, _ = p.cfg.Stderr.WriteString(OutputGuard)
	sendError(w, http.StatusBadGateway, logged)
}

func (p *Proxy) setEnv(env map[string]any) {
	p.env["__OW_PROXY_VERSION"] = Version
	if p.cfg.ExecutionEnv != "" {
		p.env["__OW_EXECUTION_ENV"] = p.cfg.ExecutionEnv
	}
	if p.cfg.WaitForAck != "" {
		p.env["__OW_WAIT_FOR_ACK"] = p.cfg.WaitForAck
	}
	for _, kv := range p.cfg.Environ {
		if strings.HasPrefix(kv, "__OW_") {
			k, v, _ := strings.Cut(kv, "=")
			p.env[k] = v
		}
	}
	for k, v := range env {
		if s, ok := v.(string); ok {
			p.env[k] = s
			continue
		}
		if b, err := json.Marshal(v); err == nil {
			p.env[k] = string(b)
		}
	}
}

// extract writes the code under Dir/<n>/src and makes it Dir/<n>/bin when
// its exec is an executable; the stand-in compiles nothing.
func (p *Proxy) extract(buf []byte) error {
	p.current++
	src := filepath.Join(p.cfg.Dir, fmt.Sprint(p.current), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	file := filepath.Join(src, "exec")
	if isZip(buf) {
		if err := unzip(buf, src); err != nil {
			return err
		}
	} else if err := os.WriteFile(file, buf, 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil || !(bytes.HasPrefix(b, []byte("\x7fELF")) || bytes.HasPrefix(b, []byte("#!"))) {
		return errors.New("cannot compile: the stand-in proxy has no compiler and exec is not an executable")
	}
	return os.Rename(src, filepath.Join(filepath.Dir(src), "bin"))
}

func isZip(b []byte) bool {
	return len(b) > 3 && b[0] == 'P' && b[1] == 'K' &&
		(b[2] == 3 || b[2] == 5 || b[2] == 7) && (b[3] == 4 || b[3] == 6 || b[3] == 8)
}

func unzip(buf []byte, dest string) error {
	zr, err := zip.NewReader(bytes.NewReader(buf), int64(len(buf)))
	if err != nil {
		return err
	}
	for _, f := range zr.File {
		path := filepath.Join(dest, f.Name)
		if !strings.HasPrefix(path, filepath.Clean(dest)+string(filepath.Separator)) {
			return fmt.Errorf("zip entry %q leaves the action directory", f.Name)
		}
		if f.FileInfo().IsDir() {
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, f.Mode())
		if err == nil {
			_, err = io.Copy(out, rc)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *Proxy) startLatest() error {
	dir := filepath.Join(p.cfg.Dir, fmt.Sprint(p.current), "bin")
	if p.cfg.ExecutionEnv != "" {
		b, err := os.ReadFile(filepath.Join(dir, "exec.env"))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != p.cfg.ExecutionEnv {
			fmt.Fprintf(p.cfg.Stdout, "Expected exec.env should start with %s\nActual value: %s", p.cfg.ExecutionEnv, b)
			return errors.New("Execution environment version mismatch. See logs for details.")
		}
	}
	executable := filepath.Join(dir, "exec")
	_ = os.Chmod(executable, 0o755)
	ex, err := newExecutor(p.cfg.Stdout, p.cfg.Stderr, executable, p.env)
	if err != nil {
		return err
	}
	if err := ex.start(p.cfg.WaitForAck != ""); err != nil {
		ex.stop()
		return err
	}
	if old := p.executor(); old != nil {
		old.stop()
	}
	p.setExecutor(ex)
	return nil
}

func (p *Proxy) run(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sendError(w, http.StatusBadRequest, fmt.Sprintf("Error reading request body: %v", err))
		return
	}
	ex := p.executor()
	if ex == nil {
		sendError(w, http.StatusInternalServerError, "no action defined yet")
		return
	}
	if ex.hasExited() {
		sendError(w, http.StatusInternalServerError, "command exited")
		return
	}
	body = bytes.ReplaceAll(body, []byte("\n"), nil)
	resp, err := ex.interact(body)
	if err != nil {
		p.setExecutor(nil)
		sendError(w, http.StatusBadRequest, "command exited")
		return
	}
	var obj map[string]*json.RawMessage
	if json.Unmarshal(resp, &obj) != nil {
		var arr []any
		if json.Unmarshal(resp, &arr) != nil {
			sendError(w, http.StatusBadGateway, "The action did not return a dictionary or array.")
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(resp)))
	_, _ = w.Write(resp)
}

// executor is the exec process and its pipes (upstream Executor).
type executor struct {
	cmd      *exec.Cmd
	stdout   *os.File
	stderr   *os.File
	input    io.WriteCloser
	output   *bufio.Reader
	pipeOut  *os.File
	exited   chan struct{}
	stopOnce sync.Once
}

func newExecutor(stdout, stderr *os.File, command string, env map[string]string) (*executor, error) {
	cmd := exec.Command(command)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	input, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pipeOut, pipeIn, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{pipeIn}
	return &executor{cmd: cmd, stdout: stdout, stderr: stderr, input: input,
		output: bufio.NewReader(pipeOut), pipeOut: pipeOut, exited: make(chan struct{})}, nil
}

// start runs exec and waits for its acknowledgement when asked, else
// checks it is still running after 5 ms.
func (e *executor) start(waitForAck bool) error {
	if err := e.cmd.Start(); err != nil {
		return errors.New("command exited")
	}
	// Like upstream, the proxy keeps its copy of the write end open: an
	// exec that dies is noticed by its exit, not by EOF on the pipe.
	go func() {
		_ = e.cmd.Wait()
		close(e.exited)
	}()
	if !waitForAck {
		select {
		case <-e.exited:
			return errors.New("command exited")
		case <-time.After(5 * time.Millisecond):
			return nil
		}
	}
	ack := make(chan error, 1)
	go func() {
		line, err := e.output.ReadBytes('\n')
		if err != nil {
			ack <- err
			return
		}
		var a struct {
			Ok bool `json:"ok"`
		}
		if err := json.Unmarshal(line, &a); err != nil {
			ack <- err
			return
		}
		if !a.Ok {
			ack <- errors.New("The action did not initialize properly.")
			return
		}
		ack <- nil
	}()
	select {
	case err := <-ack:
		return err
	case <-e.exited:
		return errors.New("Command exited abruptly during initialization.")
	}
}

func (e *executor) interact(in []byte) ([]byte, error) {
	_, _ = e.input.Write(in)
	_, _ = e.input.Write([]byte("\n"))
	chout := make(chan []byte, 1)
	go func() {
		out, err := e.output.ReadBytes('\n')
		if err != nil {
			out = []byte{}
		}
		chout <- out
	}()
	var (
		out []byte
		err error
	)
	select {
	case out = <-chout:
		if len(out) == 0 {
			err = errors.New("no answer from the action")
		}
	case <-e.exited:
		err = errors.New("command exited")
	}
	_, _ = e.stdout.WriteString(OutputGuard)
	_, _ = e.stderr.WriteString(OutputGuard)
	return out, err
}

func (e *executor) hasExited() bool {
	select {
	case <-e.exited:
		return true
	default:
		return false
	}
}

func (e *executor) stop() {
	e.stopOnce.Do(func() {
		if e.cmd.Process != nil {
			_ = e.cmd.Process.Kill()
			<-e.exited
		}
		_ = e.pipeOut.Close()
		_ = e.cmd.ExtraFiles[0].Close()
	})
}
