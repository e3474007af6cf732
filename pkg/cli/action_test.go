package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/action"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// invoker drives an action container as OpenWhisk's invoker does.
type invoker struct {
	t    *testing.T
	base string
}

func (iv invoker) post(path string, body any) (int, map[string]any) {
	iv.t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := http.Post(iv.base+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		iv.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		iv.t.Fatalf("POST %s: %d, body is not a JSON object: %q", path, resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		iv.t.Errorf("POST %s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, out
}

// run is one /run with the activation context the invoker sends.
func (iv invoker) run(id string, value map[string]any) (int, map[string]any) {
	return iv.post("/run", map[string]any{
		"value": value, "namespace": "guest", "action_name": "skein-runtime",
		"activation_id": id, "transaction_id": "tid-" + id,
		"deadline": fmt.Sprint(time.Now().Add(60 * time.Second).UnixMilli()),
	})
}

// startActionBinary runs "runtime action" on a free port and waits until
// it answers.
func startActionBinary(t *testing.T) (invoker, *testenv.Buffer) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(filepath.Join(binDir, "runtime"), "action", "--log-level", "debug")
	cmd.Env = append(os.Environ(), fmt.Sprintf("__OW_ACTION_PORT=%d", port))
	out, errOut := &testenv.Buffer{}, &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runtime action exited with %v after SIGTERM", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("runtime action did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("runtime action stderr:\n%s", errOut.String())
		}
	})
	iv := invoker{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runtime action does not listen on %d:\n%s", port, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return iv, out
}

// TestRuntimeActionProtocol drives the real runtime binary in action mode
// over /init and /run, as the invoker does, with tasks published by a
// real coordinator on the nats-server process.
func TestRuntimeActionProtocol(t *testing.T) {
	busURL := namespaced(t, testenv.Require(t, testenv.NATSURL))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, busURL, dial.Options{Name: "test-coordinator", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	co, err := coordinator.New(b, coordinator.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()

	iv, stdout := startActionBinary(t)
	runs := 0

	// Before /init the proxy refuses to run.
	if code, body := iv.run("a0", map[string]any{"pool": "default"}); code != http.StatusInternalServerError || body["error"] == nil {
		t.Fatalf("/run before /init: %d %v", code, body)
	}
	runs++
	// /init with the bus URL as an init parameter (env), as the
	// controller sends it for a docker action.
	code, body := iv.post("/init", map[string]any{"value": map[string]any{
		"name": "skein-runtime", "main": "main", "code": "", "binary": false,
		"env": map[string]any{"SKEIN_BUS_URL": busURL, "__OW_API_HOST": "http://127.0.0.1:1"},
	}})
	if code != http.StatusOK || body["ok"] != true {
		t.Fatalf("/init: %d %v", code, body)
	}
	if code, body := iv.post("/init", map[string]any{"value": map[string]any{}}); code != http.StatusForbidden || body["error"] == nil {
		t.Fatalf("second /init: %d %v, want 403 with an error", code, body)
	}

	// A map job: the activation drains its three tasks and says so.
	mapID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add",
		Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	code, body = iv.run("a1", map[string]any{"job": mapID, "pool": "default", "max_tasks": 3, "idle_ms": 2000, "seq": 0})
	runs++
	if code != http.StatusOK || body["tasks"] != 3.0 || body["job"] != mapID || body["pool"] != "default" || body["worker"] != "ow-a1" {
		t.Fatalf("/run of the map: %d %v", code, body)
	}
	st, err := co.Wait(ctx, mapID)
	if err != nil || st.State != wire.StateDone || st.Done != 3 {
		t.Fatalf("map job: %v %+v", err, st)
	}
	if res, err := co.Results(mapID, 0, 0, 1<<20); err != nil || fmt.Sprintf("%s", res.Results) != "[2 3 4]" {
		t.Fatalf("map results %s, %v; want [2 3 4]", res.Results, err)
	}

	// A task whose function fails: the activation still succeeds (200,
	// one task run); the failure reaches the coordinator as an event.
	failID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Function: "fail", Data: wire.Value(`{"message":"boom on purpose"}`)})
	if err != nil {
		t.Fatal(err)
	}
	code, body = iv.run("a2", map[string]any{"job": failID, "pool": "default", "max_tasks": 1, "idle_ms": 2000})
	runs++
	if code != http.StatusOK || body["tasks"] != 1.0 || body["worker"] != "ow-a2" {
		t.Fatalf("/run of a failing task: %d %v, want 200 with tasks 1", code, body)
	}
	st, err = co.Wait(ctx, failID)
	if err != nil || st.State != wire.StateFailed || st.Error == nil || !strings.Contains(st.Error.Message, "boom on purpose") {
		t.Fatalf("failing job: %v %+v (error %+v)", err, st, st.Error)
	}

	// Bad params: 502 with an error JSON naming each bad one.
	code, body = iv.run("a3", map[string]any{"pool": "no spaces", "max_tasks": -1, "idle_ms": "soon"})
	runs++
	msg, _ := body["error"].(string)
	if code != http.StatusBadGateway || !strings.Contains(msg, "pool") || !strings.Contains(msg, "max_tasks") || !strings.Contains(msg, "idle_ms") {
		t.Fatalf("/run with bad params: %d %v, want 502 naming pool, max_tasks and idle_ms", code, body)
	}

	// An empty queue: the activation returns after idle_ms with no task.
	start := time.Now()
	code, body = iv.run("a4", map[string]any{"job": "none", "pool": "empty", "max_tasks": 5, "idle_ms": 200})
	runs++
	if code != http.StatusOK || body["tasks"] != 0.0 {
		t.Fatalf("/run on an empty queue: %d %v", code, body)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("/run on an empty queue took %v with idle_ms 200", el)
	}

	// Every /run is framed by the end marker on stdout (written as the
	// handler returns, so just after the response).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := strings.Count(stdout.String(), action.EndMarker)
		if n == runs {
			break
		}
		if n > runs || time.Now().After(deadline) {
			t.Fatalf("%d end markers on stdout after %d runs", n, runs)
		}
	}
}
