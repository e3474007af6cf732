package action

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlog routes slog output to t.Log.
type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncBuf is a goroutine-safe buffer for the log markers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// invoker drives a proxy over HTTP as an OpenWhisk invoker does.
type invoker struct {
	t    *testing.T
	base string
}

func (iv invoker) post(path string, body string) (int, map[string]any) {
	iv.t.Helper()
	resp, err := http.Post(iv.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		iv.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		iv.t.Errorf("POST %s: Content-Type %q, want application/json", path, ct)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		iv.t.Fatalf("POST %s: response %q is not a JSON object: %v", path, raw, err)
	}
	return resp.StatusCode, out
}

func startProxy(t *testing.T, exec Executor, env map[string]string, stdout, stderr io.Writer) invoker {
	t.Helper()
	var mu sync.Mutex
	p := NewProxy(exec, Config{Logger: testLogger(t), Stdout: stdout, Stderr: stderr,
		Setenv: func(k, v string) error { mu.Lock(); defer mu.Unlock(); env[k] = v; return nil }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return invoker{t: t, base: "http://" + ln.Addr().String()}
}

func TestProtocol(t *testing.T) {
	env := map[string]string{}
	var stdout, stderr syncBuf
	exec := func(ctx context.Context, params map[string]any) (map[string]any, error) {
		act, _ := FromContext(ctx)
		dl, hasDeadline := ctx.Deadline()
		switch params["mode"] {
		case "fail":
			return nil, errors.New("function add: y is missing")
		case "panic":
			panic("boom")
		case "nil":
			return nil, nil
		}
		return map[string]any{
			"echo": params, "activation": act.ActivationID, "action": act.ActionName,
			"namespace": act.Namespace, "has_deadline": hasDeadline, "deadline_ms": dl.UnixMilli(),
			"key_seen": act.APIKey != "",
		}, nil
	}
	iv := startProxy(t, exec, env, &stdout, &stderr)

	// A run before /init.
	code, out := iv.post("/run", `{"value":{"x":1}}`)
	if code != http.StatusInternalServerError || out["error"] == nil {
		t.Fatalf("run before init: %d %v", code, out)
	}
	// Bad JSON to /init.
	if code, out := iv.post("/init", `{"value":`); code != http.StatusBadRequest || out["error"] == nil {
		t.Fatalf("bad init JSON: %d %v", code, out)
	}
	// Init with code (ignored) and env (applied).
	code, out = iv.post("/init", `{"value":{"name":"skein-runtime","main":"main","code":"","binary":false,
		"env":{"SKEIN_TEST_ACTION_ENV":"yes","__OW_API_HOST":"https://ow.example","N":3}}}`)
	if code != http.StatusOK || out["ok"] != true {
		t.Fatalf("init: %d %v", code, out)
	}
	if env["SKEIN_TEST_ACTION_ENV"] != "yes" || env["N"] != "3" || env["__OW_API_HOST"] != "https://ow.example" {
		t.Fatalf("init env not applied: %v", env)
	}
	// Second init is refused.
	if code, out := iv.post("/init", `{"value":{"name":"x"}}`); code != http.StatusForbidden || out["error"] == nil {
		t.Fatalf("second init: %d %v", code, out)
	}

	// Several runs, as the invoker sends them.
	deadline := time.Now().Add(time.Minute).UnixMilli()
	for i := 0; i < 3; i++ {
		body, _ := json.Marshal(map[string]any{
			"value": map[string]any{"x": i, "pool": "default"}, "namespace": "guest",
			"action_name": "/guest/skein", "activation_id": "act" + string(rune('0'+i)),
			"deadline": deadline, "api_key": "uuid:secret",
		})
		code, out := iv.post("/run", string(body))
		if code != http.StatusOK {
			t.Fatalf("run %d: %d %v", i, code, out)
		}
		echo := out["echo"].(map[string]any)
		if echo["x"] != float64(i) || echo["pool"] != "default" || out["activation"] != "act"+string(rune('0'+i)) ||
			out["action"] != "/guest/skein" || out["namespace"] != "guest" || out["has_deadline"] != true ||
			out["deadline_ms"] != float64(deadline) || out["key_seen"] != true {
			t.Fatalf("run %d: unexpected result %v", i, out)
		}
	}
	// Deadline as a string (older invokers).
	if code, out := iv.post("/run", `{"value":{},"deadline":"`+jsonInt(time.Now().Add(time.Minute).UnixMilli())+`"}`); code != http.StatusOK || out["has_deadline"] != true {
		t.Fatalf("string deadline: %d %v", code, out)
	}
	// A function that fails: 502 with the error.
	code, out = iv.post("/run", `{"value":{"mode":"fail"},"activation_id":"f1"}`)
	if code != http.StatusBadGateway || out["error"] != "function add: y is missing" {
		t.Fatalf("failing run: %d %v", code, out)
	}
	// A panic is a failure too, and the proxy keeps serving.
	code, out = iv.post("/run", `{"value":{"mode":"panic"}}`)
	if code != http.StatusBadGateway || !strings.Contains(out["error"].(string), "boom") {
		t.Fatalf("panicking run: %d %v", code, out)
	}
	// A nil result is the empty object.
	if code, out := iv.post("/run", `{"value":{"mode":"nil"}}`); code != http.StatusOK || len(out) != 0 {
		t.Fatalf("nil result: %d %v", code, out)
	}
	// Bad JSON and a value that is not an object.
	if code, out := iv.post("/run", `{"value":{"x":`); code != http.StatusBadRequest || out["error"] == nil {
		t.Fatalf("bad run JSON: %d %v", code, out)
	}
	if code, out := iv.post("/run", `{"value":[1,2]}`); code != http.StatusBadRequest || out["error"] == nil {
		t.Fatalf("array value: %d %v", code, out)
	}
	if code, out := iv.post("/run", `{"value":{},"deadline":"soon"}`); code != http.StatusBadRequest || out["error"] == nil {
		t.Fatalf("bad deadline: %d %v", code, out)
	}
	// Params sent bare, without "value", are refused, not run with
	// defaults.
	if code, out := iv.post("/run", `{"pool":"default","max_tasks":3}`); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), `no "value"`) {
		t.Fatalf("run without value: %d %v", code, out)
	}
	// Routes and methods.
	if code, _ := iv.post("/other", `{}`); code != http.StatusNotFound {
		t.Fatalf("unknown route: %d", code)
	}
	resp, err := http.Get(iv.base + "/run")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /run: %d", resp.StatusCode)
	}

	// Every /run (12 of them) ends with the marker on both streams.
	for name, s := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String()} {
		if n := strings.Count(s, EndMarker+"\n"); n != 12 {
			t.Errorf("%s has %d end markers, want 12:\n%s", name, n, s)
		}
	}
}

func TestDeadlineEndsContext(t *testing.T) {
	exec := func(ctx context.Context, _ map[string]any) (map[string]any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	iv := startProxy(t, exec, map[string]string{}, io.Discard, io.Discard)
	iv.post("/init", `{"value":{}}`)
	dl := time.Now().Add(200 * time.Millisecond).UnixMilli()
	start := time.Now()
	code, out := iv.post("/run", `{"value":{},"deadline":`+jsonInt(dl)+`}`)
	if code != http.StatusBadGateway || !strings.Contains(out["error"].(string), "deadline") {
		t.Fatalf("run past deadline: %d %v", code, out)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("run took %v, the deadline was 200ms", el)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestAddr(t *testing.T) {
	t.Setenv("__OW_ACTION_PORT", "")
	if a := Addr(); a != ":8080" {
		t.Fatalf("Addr() = %q", a)
	}
	t.Setenv("__OW_ACTION_PORT", "9191")
	if a := Addr(); a != ":9191" {
		t.Fatalf("Addr() = %q", a)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, addr, func(context.Context, map[string]any) (map[string]any, error) { return nil, nil }, testLogger(t))
	}()
	var resp *http.Response
	for i := 0; i < 100; i++ {
		resp, err = http.Post("http://"+addr+"/init", "application/json", strings.NewReader(`{"value":{}}`))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy never answered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("init: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
