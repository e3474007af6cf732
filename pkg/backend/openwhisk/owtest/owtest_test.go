package owtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// testAction builds pkg/action/internal/testaction once.
func testAction(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "owtest-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "testaction")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/skeinrun/skein/pkg/action/internal/testaction").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build testaction: %v\n%s", buildErr, binPath)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type api struct {
	t    *testing.T
	base string
	key  string
}

func (a api) do(method, path, body string) (int, http.Header, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if a.key != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.key)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			a.t.Fatalf("%s %s: %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func TestControllerAPI(t *testing.T) {
	ctl, err := Start(Config{APIKey: "u1:k1", Command: []string{testAction(t)}, MaxContainers: 2,
		RetryAfter: "0", ContainerOutput: tlog{t}, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	a := api{t: t, base: ctl.URL(), key: "u1:k1"}
	const act = "/api/v1/namespaces/_/actions/skein"

	if code, _, out := (api{t: t, base: ctl.URL(), key: "u1:wrong"}).do("GET", act, ""); code != 401 || out["error"] == nil {
		t.Fatalf("wrong key: %d %v", code, out)
	}
	if code, _, _ := (api{t: t, base: ctl.URL()}).do("GET", act, ""); code != 401 {
		t.Fatalf("no key: %d", code)
	}
	if code, _, _ := a.do("GET", "/api/v1/namespaces/other/actions/skein", ""); code != 403 {
		t.Fatalf("foreign namespace: %d", code)
	}
	if code, _, _ := a.do("POST", act+"?blocking=false", `{}`); code != 404 {
		t.Fatalf("invoke of a missing action: %d", code)
	}
	spec := `{"exec":{"kind":"blackbox","image":"skein/runtime:test"},"limits":{"timeout":5000,"memory":256},
		"parameters":[{"key":"SKEIN_TEST_SECRET","value":"s3cret","init":true},{"key":"echo","value":"default"}]}`
	if code, _, out := a.do("PUT", act+"?overwrite=true", spec); code != 200 || out["name"] != "skein" || out["parameters"] != nil {
		t.Fatalf("put: %d %v", code, out)
	}
	if code, _, _ := a.do("PUT", act, spec); code != 409 {
		t.Fatalf("put without overwrite: %d", code)
	}
	if code, _, out := a.do("GET", "/api/v1/namespaces/guest/actions/skein", ""); code != 200 || out["version"] != "0.0.0" {
		t.Fatalf("get by namespace name: %d %v", code, out)
	}

	// Blocking invocation: default param, init env, activation context.
	code, _, rec := a.do("POST", act+"?blocking=true", `{}`)
	resp, _ := rec["response"].(map[string]any)
	if code != 200 || resp["success"] != true {
		t.Fatalf("blocking invoke: %d %v", code, rec)
	}
	res := resp["result"].(map[string]any)
	if res["echo"] != "default" || res["secret_env"] != "s3cret" || res["activation"] != rec["activationId"] || res["has_deadline"] != true {
		t.Fatalf("blocking result: %v", res)
	}
	// Invocation params override defaults; result=true returns the result only.
	if code, _, out := a.do("POST", act+"?blocking=true&result=true", `{"echo":42}`); code != 200 || out["echo"] != float64(42) {
		t.Fatalf("result=true: %d %v", code, out)
	}
	// A failing activation: 502 with an application error record.
	code, _, rec = a.do("POST", act+"?blocking=true", `{"fail":true}`)
	resp, _ = rec["response"].(map[string]any)
	if code != 502 || resp["status"] != "application error" || resp["success"] != false ||
		resp["result"].(map[string]any)["error"] != "failing on request" {
		t.Fatalf("failing activation: %d %v", code, rec)
	}
	// Non-blocking: 202 with an id; 404 until the record exists, then 200.
	code, _, out := a.do("POST", act+"?blocking=false", `{"sleep_ms":300}`)
	id, _ := out["activationId"].(string)
	if code != 202 || len(id) != 32 {
		t.Fatalf("non-blocking invoke: %d %v", code, out)
	}
	if code, _, _ := a.do("GET", "/api/v1/namespaces/_/activations/"+id, ""); code != 404 {
		t.Fatalf("running activation: %d, want 404", code)
	}
	if err := ctl.Wait(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	code, _, rec = a.do("GET", "/api/v1/namespaces/_/activations/"+id, "")
	if code != 200 || rec["response"].(map[string]any)["result"].(map[string]any)["slept_ms"] != float64(300) {
		t.Fatalf("finished activation: %d %v", code, rec)
	}
	// 429 on demand, with Retry-After.
	ctl.Throttle(1)
	if code, h, _ := a.do("POST", act+"?blocking=false", `{"echo":1}`); code != 429 || h.Get("Retry-After") != "0" {
		t.Fatalf("throttled invoke: %d %v", code, h)
	}
	// Key rotation: the old key gets 401.
	ctl.RotateKey("u1:k2")
	if code, _, _ := a.do("GET", act, ""); code != 401 {
		t.Fatalf("old key after rotation: %d", code)
	}
	a.key = "u1:k2"
	if code, _, _ := a.do("DELETE", act, ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _, _ := a.do("GET", act, ""); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
	st := ctl.Stats()
	if st.Throttled != 1 || st.Unauthorized != 3 || st.Activations != 4 || st.Failed != 1 || st.ColdStarts < 1 || st.ColdStarts > 2 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestMaxInFlight(t *testing.T) {
	ctl, err := Start(Config{APIKey: "u:k", Command: []string{testAction(t)}, MaxContainers: 2, MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	a := api{t: t, base: ctl.URL(), key: "u:k"}
	const act = "/api/v1/namespaces/_/actions/s"
	if code, _, _ := a.do("PUT", act+"?overwrite=true", `{"exec":{"kind":"blackbox","image":"x"}}`); code != 200 {
		t.Fatal("put failed")
	}
	codes := map[int]int{}
	for range 4 {
		code, _, _ := a.do("POST", act+"?blocking=false", `{"sleep_ms":500}`)
		codes[code]++
	}
	if codes[202] != 2 || codes[429] != 2 {
		t.Fatalf("answers %v, want two 202 and two 429", codes)
	}
	if err := ctl.Wait(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := a.do("POST", act+"?blocking=false", `{"sleep_ms":1}`); code != 202 {
		t.Fatalf("after the in-flight activations ended: %d", code)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
