package cli_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/action/proxytest"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// runtimeZip is the runtime program zipped as a native Go action's code:
// "exec", and "exec.env" when execEnv is set.
func runtimeZip(t *testing.T, execEnv string) string {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join(binDir, "runtime"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "exec", Method: zip.Store}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(bin)
	if execEnv != "" {
		w, _ := zw.Create("exec.env")
		_, _ = io.WriteString(w, execEnv+"\n")
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// pipeOutput is an *os.File for the stand-in proxy's stdout or stderr,
// copied into a buffer.
type pipeOutput struct {
	w    *os.File
	mu   sync.Mutex
	b    bytes.Buffer
	done chan struct{}
}

func newPipeOutput(t *testing.T) *pipeOutput {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeOutput{w: w, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			p.mu.Lock()
			p.b.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { w.Close(); <-p.done; r.Close() })
	return p
}

func (p *pipeOutput) String() string { p.mu.Lock(); defer p.mu.Unlock(); return p.b.String() }

// waitFor waits until cond holds on what came out of p so far (a pipe
// is read by a goroutine, a moment after the proxy or runtime wrote).
func (p *pipeOutput) waitFor(t *testing.T, what string, cond func(string) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(p.String()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s:\n%s", what, p.String())
		}
	}
}

// loopContainer is a native Go action's container: the stand-in
// actionloop proxy (as in the action-golang image when ack is set).
type loopContainer struct {
	t              *testing.T
	proxy          *proxytest.Proxy
	srv            *httptest.Server
	stdout, stderr *pipeOutput
}

func startLoopContainer(t *testing.T, ack bool, execEnv string) *loopContainer {
	t.Helper()
	c := &loopContainer{t: t, stdout: newPipeOutput(t), stderr: newPipeOutput(t)}
	cfg := proxytest.Config{Dir: filepath.Join(t.TempDir(), "action"), ExecutionEnv: execEnv, LogInitError: true,
		Stdout: c.stdout.w, Stderr: c.stderr.w}
	if ack {
		cfg.WaitForAck = "1"
	}
	c.proxy = proxytest.New(cfg)
	c.srv = httptest.NewServer(c.proxy)
	t.Cleanup(func() {
		c.srv.Close()
		c.proxy.Stop()
		if t.Failed() {
			t.Logf("container stdout:\n%s\ncontainer stderr:\n%s", c.stdout.String(), c.stderr.String())
		}
	})
	return c
}

func (c *loopContainer) post(path string, body any) (int, []byte) {
	c.t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		raw, _ = json.Marshal(body)
	}
	resp, err := http.Post(c.srv.URL+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func (c *loopContainer) init(code string, env map[string]any) (int, []byte) {
	return c.post("/init", map[string]any{"value": map[string]any{
		"name": "skein-runtime", "main": "main", "code": code, "binary": true, "env": env,
	}})
}

// run sends an activation as the invoker does and decodes the answer.
func (c *loopContainer) run(id string, value map[string]any, deadline time.Time) (int, map[string]any) {
	c.t.Helper()
	code, data := c.post("/run", map[string]any{
		"value": value, "namespace": "guest", "action_name": "/guest/skein-runtime",
		"activation_id": id, "transaction_id": "tid-" + id,
		"deadline": fmt.Sprint(deadline.UnixMilli()), "api_key": "",
	})
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		c.t.Fatalf("/run %s: %d, not a JSON object: %q", id, code, data)
	}
	return code, out
}

// loopCluster is a coordinator on the shared nats-server, in a namespace
// of the test's own.
func loopCluster(t *testing.T) (string, *coordinator.Coordinator) {
	t.Helper()
	busURL := namespaced(t, testenv.Require(t, testenv.NATSURL))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, busURL, dial.Options{Name: "test-coordinator", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	co, err := coordinator.New(b, coordinator.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { co.Close() })
	return busURL, co
}

// TestRuntimeActionLoop runs the runtime program as the exec of a native
// Go action behind the stand-in for the action-golang image's proxy
// (acknowledgement asked, exec.env checked): /init with the zip, /run
// with a job's activation body; the results reach the coordinator on the
// bus; the proxy frames each activation's logs with its end markers; a
// /run without "value" is refused by the runtime with an error result.
func TestRuntimeActionLoop(t *testing.T) {
	busURL, co := loopCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const execEnv = "openwhisk/action-golang-v1.24"

	c := startLoopContainer(t, true, execEnv)
	if code, body := c.init(runtimeZip(t, "openwhisk/action-golang-v1.22"), nil); code != http.StatusBadGateway ||
		!strings.Contains(string(body), "Cannot start action") {
		t.Fatalf("/init with the wrong exec.env: %d %s, want 502", code, body)
	}
	c = startLoopContainer(t, true, execEnv)
	code, body := c.init(runtimeZip(t, execEnv), map[string]any{"SKEIN_BUS_URL": busURL, "SKEIN_LOG_LEVEL": "debug"})
	if code != http.StatusOK || string(body) != "{\"ok\":true}\n" {
		t.Fatalf("/init: %d %q, want 200 {\"ok\":true}", code, body)
	}
	// The proxy answered /init only after the runtime's acknowledgement,
	// and the runtime chose the actionloop mode by itself (no arguments).
	c.stderr.waitFor(t, "the runtime did not start in actionloop mode", func(s string) bool {
		return strings.Contains(s, "actionloop ready")
	})

	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add",
		Iterdata: wire.Value(`[1,2,3,4]`), ExtraParams: wire.Value(`{"y":10}`)})
	if err != nil {
		t.Fatal(err)
	}
	code, res := c.run("act1", map[string]any{"job": id, "pool": "default", "max_tasks": 4, "idle_ms": 2000, "seq": 0},
		time.Now().Add(60*time.Second))
	if code != http.StatusOK || res["tasks"] != 4.0 || res["job"] != id || res["worker"] != "ow-act1" {
		t.Fatalf("/run: %d %v", code, res)
	}
	st, err := co.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Done != 4 {
		t.Fatalf("job: %v %+v", err, st)
	}
	if r, err := co.Results(id, 0, 0, 1<<20); err != nil || fmt.Sprintf("%s", r.Results) != "[11 12 13 14]" {
		t.Fatalf("results %s, %v", r.Results, err)
	}

	// A body without "value": the runtime answers an error object (the
	// proxy passes it on with 200; OpenWhisk records an application
	// error).
	code, raw := c.post("/run", []byte(`{"job":"x","pool":"default","activation_id":"act2"}`))
	var refused map[string]any
	_ = json.Unmarshal(raw, &refused)
	if msg, _ := refused["error"].(string); code != http.StatusOK || !strings.Contains(msg, `no "value"`) {
		t.Fatalf("/run without value: %d %s, want an error naming the missing value", code, raw)
	}

	// Each activation's logs end with the proxy's markers, one per /run
	// on each stream; the runtime writes none itself.
	for name, out := range map[string]*pipeOutput{"stdout": c.stdout, "stderr": c.stderr} {
		out.waitFor(t, name+" lacks its 2 end markers", func(s string) bool {
			return strings.Count(s, strings.TrimSpace(proxytest.OutputGuard)) >= 2
		})
		if n := strings.Count(out.String(), strings.TrimSpace(proxytest.OutputGuard)); n != 2 {
			t.Errorf("%s has %d end markers after 2 activations, want 2:\n%s", name, n, out.String())
		}
	}
	logs := c.stderr.String()
	if i, j := strings.Index(logs, "activation done"), strings.Index(logs, proxytest.OutputGuard); i < 0 || j < i {
		t.Errorf("the first activation's log is not before its end marker:\n%s", logs)
	}
}

// TestRuntimeActionLoopNoAck: an image that does not ask for the
// acknowledgement (OW_WAIT_FOR_ACK unset) reads nothing from descriptor 3
// until the first activation, so the runtime must not write one: the
// first /run's answer is the activation's result.
func TestRuntimeActionLoopNoAck(t *testing.T) {
	busURL, _ := loopCluster(t)
	c := startLoopContainer(t, false, "")
	if code, body := c.init(runtimeZip(t, ""), map[string]any{"SKEIN_BUS_URL": busURL}); code != http.StatusOK {
		t.Fatalf("/init: %d %s", code, body)
	}
	code, res := c.run("act1", map[string]any{"job": "none", "pool": "empty", "max_tasks": 1, "idle_ms": 100},
		time.Now().Add(30*time.Second))
	if code != http.StatusOK || res["ok"] != nil || res["tasks"] != 0.0 || res["worker"] != "ow-act1" {
		t.Fatalf("first /run: %d %v, want the activation's summary", code, res)
	}
}

// TestRuntimeActionLoopDeadline: an activation whose deadline comes
// before its work is done returns in time, and the task it could not
// finish goes back to the queue at once: a second activation runs it
// well before the task's lease (30 s) would have run out.
func TestRuntimeActionLoopDeadline(t *testing.T) {
	busURL, co := loopCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startLoopContainer(t, true, "")
	if code, body := c.init(runtimeZip(t, ""), map[string]any{"SKEIN_BUS_URL": busURL}); code != http.StatusOK {
		t.Fatalf("/init: %d %s", code, body)
	}
	// Task 0 takes 0.1 s, task 1 takes 6 s: the first activation (3 s)
	// finishes task 0 and cannot finish task 1.
	id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep",
		Iterdata: wire.Value(`[{"x":0.1,"value":0},{"x":6,"value":1}]`)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(3 * time.Second)
	code, res := c.run("short", map[string]any{"job": id, "pool": "default", "max_tasks": 2, "idle_ms": 2000, "slots": 2}, deadline)
	if back := time.Now(); code != http.StatusOK || back.After(deadline) {
		t.Fatalf("/run with a 3 s deadline: %d %v after %v, want a result before the deadline", code, res, back.Sub(start))
	}
	if res["tasks"] != 1.0 {
		t.Fatalf("the short activation ran %v tasks, want 1 (task 1 outlasts it)", res["tasks"])
	}
	// The next activation finds task 1 on the queue at once.
	handed := time.Now()
	code, res = c.run("long", map[string]any{"job": id, "pool": "default", "max_tasks": 1, "idle_ms": 2000}, time.Now().Add(40*time.Second))
	if code != http.StatusOK || res["tasks"] != 1.0 {
		t.Fatalf("second /run: %d %v, want task 1 run", code, res)
	}
	if el := time.Since(handed); el > 15*time.Second {
		t.Fatalf("task 1 ran %v after it was handed back: it waited for its lease", el)
	}
	st, err := co.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Done != 2 || st.Failed != 0 {
		t.Fatalf("job: %v %+v", err, st)
	}
}
