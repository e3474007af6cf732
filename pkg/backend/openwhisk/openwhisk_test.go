package openwhisk

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/skeinrun/skein/pkg/backend"
	"github.com/skeinrun/skein/pkg/backend/openwhisk/owtest"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

var (
	buildOnce sync.Once
	binPath   string
	buildOut  string
	buildErr  error
)

func testAction(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ow-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "testaction")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/skeinrun/skein/pkg/action/internal/testaction").CombinedOutput()
		buildOut, buildErr = string(out), err
	})
	if buildErr != nil {
		t.Fatalf("build testaction: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// rotatingKey is a credentials provider whose key the test rotates.
type rotatingKey struct {
	mu    sync.Mutex
	key   string
	calls atomic.Int64
}

func (r *rotatingKey) set(k string) { r.mu.Lock(); r.key = k; r.mu.Unlock() }
func (r *rotatingKey) get(context.Context) (Credentials, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return Credentials{APIKey: r.key}, nil
}

func baseConfig(t testing.TB, ctl *owtest.Controller, creds CredentialsFunc) Config {
	cfg := DefaultConfig()
	cfg.APIHost = ctl.URL()
	cfg.Credentials = creds
	cfg.Image = "skein/runtime:test"
	cfg.TimeoutMS = 20_000
	cfg.RetryBase = 5 * time.Millisecond
	cfg.RetryMax = 100 * time.Millisecond
	cfg.MaxAttempts = 50
	cfg.Logger = testLogger(t)
	return cfg
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil {
		t.Fatal("default config without host, credentials and image validated")
	}
	cfg := DefaultConfig()
	cfg.APIHost, cfg.Namespace, cfg.Action, cfg.Kind = "ftp://x", "a/b", "/x", "blackbox"
	cfg.MemoryMB, cfg.TimeoutMS, cfg.Concurrency, cfg.Batch, cfg.PoolThreads = 64, 10, 0, 0, 0
	cfg.IdleMS, cfg.RateLimit, cfg.MaxAttempts, cfg.RetryBase = -1, -1, 0, 0
	cfg.Params = map[string]any{"pool": "x", "K": 1}
	cfg.Env = map[string]string{"K": "v", "A B": "v"}
	err := cfg.Validate()
	for _, f := range []string{"APIHost", "Namespace", "Credentials", "Action", "Image", "MemoryMB", "TimeoutMS",
		"Concurrency", "Batch", "IdleMS", "PoolThreads", "RateLimit", "MaxAttempts", "RetryBase", `"pool"`, `"K" is in both`, `"A B"`} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate does not name %s: %v", f, err)
		}
	}
	cfg = DefaultConfig()
	cfg.APIHost, cfg.Image = "https://us-south.functions.cloud.ibm.com", "img"
	cfg.Credentials = StaticCredentials(Credentials{APIKey: "uuid:key"})
	if err := cfg.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	c := Credentials{APIKey: "uuid:supersecret"}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("x", "creds", c)
	if s := sb.String() + c.String(); strings.Contains(s, "supersecret") {
		t.Fatalf("credentials printed: %s", s)
	}
	if _, err := NewClient(context.Background(), Config{}); err == nil || strings.Contains(err.Error(), "supersecret") {
		t.Fatalf("NewClient: %v", err)
	}
	cfg := DefaultConfig()
	cfg.APIHost, cfg.Image = "http://127.0.0.1:1", "img"
	cfg.Credentials = StaticCredentials(Credentials{APIKey: "nocolon-supersecret"})
	if _, err := NewClient(context.Background(), cfg); err == nil || strings.Contains(err.Error(), "supersecret") {
		t.Fatalf("bad key error leaks it or is missing: %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	if d := retryAfter("2"); d < 2*time.Second || d > 3*time.Second {
		t.Fatalf("Retry-After 2: %v", d)
	}
	if d := retryAfter("junk"); d != 0 {
		t.Fatalf("junk: %v", d)
	}
	if d := retryAfter("3600"); d != time.Minute {
		t.Fatalf("cap: %v", d)
	}
}

func TestLimiterAdapts(t *testing.T) {
	l := newLimiter(0)
	if l.current() != 0 {
		t.Fatal("new limiter limits")
	}
	l.winFrom = time.Now().Add(-500 * time.Millisecond)
	for range 100 {
		l.ok()
	}
	l.throttled() // about 200/s were accepted: halve that
	if r := l.current(); r < 50 || r > 150 {
		t.Fatalf("rate after the first 429: %v, want about 100", r)
	}
	for range 2000 {
		l.ok()
	}
	if l.current() != 0 {
		t.Fatalf("limit did not recover: %v", l.current())
	}

	l = newLimiter(100)
	l.throttled()
	l.throttled() // same burst: ignored
	if r := l.current(); r != 50 {
		t.Fatalf("a burst of 429s from 100/s: %v, want 50", r)
	}
	l.cutAt = time.Time{}
	l.throttled()
	if r := l.current(); r != 25 {
		t.Fatalf("a second 429 later: %v, want 25", r)
	}
	for range 200 {
		l.ok()
	}
	if r := l.current(); r != 100 {
		t.Fatalf("recovered to %v, want the cap 100", r)
	}
	start := time.Now()
	l.cutAt = time.Time{}
	l.throttled() // 50/s: 10 waits take about 200ms
	for range 11 {
		l.wait(context.Background())
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("11 waits at 50/s took %v", el)
	}
}

// startController runs the fake controller with the test action.
func startController(t *testing.T, cfg owtest.Config) *owtest.Controller {
	t.Helper()
	cfg.Command = []string{testAction(t)}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctl, err := owtest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	return ctl
}

func TestReauthRedeployAndBlocking(t *testing.T) {
	ctl := startController(t, owtest.Config{APIKey: "u:k1"})
	rk := &rotatingKey{key: "u:k1"}
	cfg := baseConfig(t, ctl, rk.get)
	cfg.Env = map[string]string{"SKEIN_TEST_SECRET": "from-init"}
	ctx := context.Background()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Deploy(ctx); err != nil {
		t.Fatal(err)
	}
	// 401 after a rotation: one refresh, then success.
	ctl.RotateKey("u:k2")
	rk.set("u:k2")
	a, err := b.Client().InvokeBlocking(ctx, cfg.Action, map[string]any{"echo": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Response.Success || a.Response.Result["echo"] != "hi" || a.Response.Result["secret_env"] != "from-init" {
		t.Fatalf("activation: %+v", a.Response)
	}
	if st := b.Stats(); st.Reauths != 1 || rk.calls.Load() != 2 || ctl.Stats().Unauthorized != 1 {
		t.Fatalf("reauth counts: client %+v, provider calls %d, controller %+v", st, rk.calls.Load(), ctl.Stats())
	}
	// A key that stays wrong: one refresh, then the 401 is returned.
	ctl.RotateKey("u:k3")
	_, err = b.Client().Invoke(ctx, cfg.Action, map[string]any{"echo": 1})
	if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "k2") {
		t.Fatalf("invoke with a stale key: %v", err)
	}
	ctl.RotateKey("u:k2")
	// A failed activation comes back as a record, not an error.
	a, err = b.Client().InvokeBlocking(ctx, cfg.Action, map[string]any{"fail": true})
	if err != nil || a.Response.Success || a.Response.Status != "application error" {
		t.Fatalf("failed activation: %v %+v", err, a)
	}
	// The action is deleted behind our back: Dispatch redeploys it.
	ctl.DeleteAction(cfg.Action)
	puts := ctl.Stats().ActionPuts
	if err := b.Dispatch(ctx, backend.Job{ID: "j", Pool: "p", Tasks: 1}); err != nil {
		t.Fatalf("dispatch after delete: %v", err)
	}
	if st := b.Stats(); st.Redeploys != 1 || ctl.Stats().ActionPuts != puts+1 {
		t.Fatalf("redeploys %d, puts %d -> %d", st.Redeploys, puts, ctl.Stats().ActionPuts)
	}
	// Closed backend.
	b.Close()
	if err := b.Dispatch(ctx, backend.Job{ID: "j", Pool: "p", Tasks: 1}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("dispatch after close: %v", err)
	}
}

// startNATS runs an in-process NATS server with JetStream and the
// streams the test action uses.
func startNATS(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "TASKS", Subjects: []string{"tasks.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RESULTS", Subjects: []string{"results.>"}}); err != nil {
		t.Fatal(err)
	}
	return s.ClientURL(), js
}

// TestMap500 is the end-to-end run: 500 tasks on a NATS work queue,
// dispatched through the openwhisk backend against the fake controller,
// whose activations run the action binary as subprocesses driven over the
// action proxy protocol; results come back on the bus only.
func TestMap500(t *testing.T) {
	const N, batch = 500, 10
	natsURL, js := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range N {
		body, _ := json.Marshal(map[string]any{"job": "job500", "i": i, "x": i})
		if _, err := js.Publish(ctx, "tasks.default", body); err != nil {
			t.Fatal(err)
		}
	}
	ctl := startController(t, owtest.Config{APIKey: "u:k1", MaxContainers: 6, MaxInFlight: 12, RetryAfter: "0.02"})
	rk := &rotatingKey{key: "u:k1"}
	cfg := baseConfig(t, ctl, rk.get)
	cfg.Batch = batch
	cfg.IdleMS = 300
	cfg.PoolThreads = 16
	cfg.Env = map[string]string{"SKEIN_BUS_URL": natsURL}
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The key is rotated before the first request: one 401 and a refresh.
	ctl.RotateKey("u:k2")
	rk.set("u:k2")
	// And the controller throttles three requests on demand, on top of its
	// in-flight limit of 12 (16 pool threads exceed it).
	ctl.Throttle(3)
	start := time.Now()
	if err := b.Dispatch(ctx, backend.Job{ID: "job500", Pool: "default", Tasks: N}); err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	dispatched := time.Since(start)

	// Results arrive on the bus.
	cons, err := js.OrderedConsumer(ctx, "RESULTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"results.job500"}})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int]int)
	acts := map[string]bool{}
	for len(seen) < N {
		msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("after %d results: %v (controller %+v)", len(seen), err, ctl.Stats())
		}
		var r struct {
			I   int     `json:"i"`
			Y   float64 `json:"y"`
			Act string  `json:"act"`
		}
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Y != float64(r.I*r.I) {
			t.Fatalf("task %d: y = %v, want %d", r.I, r.Y, r.I*r.I)
		}
		seen[r.I]++
		acts[r.Act] = true
	}
	for i := range N {
		if seen[i] != 1 {
			t.Fatalf("task %d has %d results", i, seen[i])
		}
	}
	if err := ctl.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)

	st, cst := b.Stats(), ctl.Stats()
	t.Logf("dispatch %v, all results %v; client %+v; controller %+v; %d activations ran tasks", dispatched, elapsed, st, cst, len(acts))
	if st.Invocations != N/batch || cst.Invocations != N/batch || cst.Activations != N/batch {
		t.Fatalf("invocations: client %d, controller accepted %d, finished %d; want %d", st.Invocations, cst.Invocations, cst.Activations, N/batch)
	}
	if st.Reauths != 1 || cst.Unauthorized != 1 {
		t.Fatalf("401 handling: client reauths %d, controller 401s %d; want 1 and 1", st.Reauths, cst.Unauthorized)
	}
	if cst.Throttled < 3 || st.Throttled != cst.Throttled {
		t.Fatalf("429 handling: client saw %d, controller sent %d (want >= 3 and equal)", st.Throttled, cst.Throttled)
	}
	if cst.MaxInFlightAt > 12 {
		t.Fatalf("in flight reached %d past the limit 12", cst.MaxInFlightAt)
	}
	if cst.Failed != 0 {
		t.Fatalf("%d activations failed", cst.Failed)
	}
	// The activation summaries add up to the tasks run.
	total := 0.0
	for _, r := range ctl.Records() {
		total += r["response"].(map[string]any)["result"].(map[string]any)["tasks"].(float64)
	}
	if total != N {
		t.Fatalf("activation summaries count %v tasks, want %d", total, N)
	}
}
