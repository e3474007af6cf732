package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skeinrun/skein/pkg/cli"
)

// httpGet returns the status and body of url ("" and -1 when nothing
// answers).
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return -1, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := httpGet(url)
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s after %v", url, code, body, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// promValues parses a Prometheus exposition and returns each sample's
// value by "name{label=value,...}" (labels in the order written).
func promValues(t *testing.T, body string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				if l.GetName() == "worker" {
					continue
				}
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			k := name
			if len(ls) > 0 {
				k += "{" + strings.Join(ls, ",") + "}"
			}
			out[k] = m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

// TestHTTPEndpoints runs the coordinator and a runtime process with
// --http: both refuse a public address without --http-public, answer
// /healthz and /readyz, and after a job their /metrics parse and count
// the job's tasks.
func TestHTTPEndpoints(t *testing.T) {
	for _, prog := range []string{"coordinator", "runtime"} {
		cmd := exec.Command(filepath.Join(binDir, prog), "--bus", "nats://127.0.0.1:1", "--http", "0.0.0.0:9")
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != cli.ExitUsage || !strings.Contains(string(out), "--http-public") {
			t.Errorf("%s --http 0.0.0.0:9: %v\n%s", prog, err, out)
		}
	}

	np, hp, rp := freePort(t), freePort(t), freePort(t)
	bus := "nats://127.0.0.1:" + strconv.Itoa(np)
	chttp := "http://127.0.0.1:" + strconv.Itoa(hp)
	rhttp := "http://127.0.0.1:" + strconv.Itoa(rp)
	start(t, "coordinator", "--embedded-listen", "127.0.0.1:"+strconv.Itoa(np), "--http", "127.0.0.1:"+strconv.Itoa(hp))
	waitHTTP(t, chttp+"/readyz", 30*time.Second)
	if code, body := httpGet(chttp + "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("coordinator /healthz: %d %q", code, body)
	}
	start(t, "runtime", "--bus", bus, "--slots", "2", "--worker-id", "rt-http", "--http", "127.0.0.1:"+strconv.Itoa(rp))
	waitHTTP(t, rhttp+"/readyz", 30*time.Second)

	out, errOut, code := submit(t, "map", "--bus", bus, "--function", "sleep", "--iterdata", "["+strings.TrimSuffix(strings.Repeat("0.03,", 20), ",")+"]")
	if code != 0 {
		t.Fatalf("submit: exit %d %s\n%s", code, out, errOut)
	}
	code, body := httpGet(chttp + "/metrics")
	if code != 200 {
		t.Fatalf("coordinator /metrics: %d", code)
	}
	cv := promValues(t, body)
	for k, want := range map[string]float64{
		"skein_tasks_published_total{pool=default}": 20,
		"skein_tasks_done_total{pool=default}":      20,
		"skein_jobs_ended_total{state=done}":        1,
		"skein_jobs{state=done}":                    1,
		"skein_runtimes_active{pool=default}":       1,
		"skein_bus_connected":                       1,
		"skein_coordinator_lease_held":              1,
	} {
		if cv[k] != want {
			t.Errorf("coordinator %s = %v, want %v", k, cv[k], want)
		}
	}
	code, body = httpGet(rhttp + "/metrics")
	if code != 200 {
		t.Fatalf("runtime /metrics: %d", code)
	}
	rv := promValues(t, body)
	for k, want := range map[string]float64{
		"skein_runtime_attempts_total{pool=default}": 20,
		"skein_runtime_slots{pool=default}":          2,
		"skein_runtime_slots_busy{pool=default}":     0,
		"skein_bus_connected{pool=default}":          1,
	} {
		if rv[k] != want {
			t.Errorf("runtime %s = %v, want %v\n%s", k, rv[k], want, body)
		}
	}
}

// TestEmbeddedDashboard runs `submit --dashboard` in embedded mode: while
// the job runs, the page's API lists it running and /metrics counts its
// tasks; --dashboard with --bus, or on a public address, is a usage
// error.
func TestEmbeddedDashboard(t *testing.T) {
	for _, args := range [][]string{
		{"map", "--function", "noop", "--iterdata", "[1]", "--bus", "nats://127.0.0.1:1", "--dashboard", "127.0.0.1:0"},
		{"map", "--function", "noop", "--iterdata", "[1]", "--dashboard", "0.0.0.0:0"},
	} {
		if _, errOut, code := submit(t, args...); code != cli.ExitUsage || !strings.Contains(errOut, "--dashboard") {
			t.Errorf("submit %v: exit %d, stderr %q", args, code, errOut)
		}
	}
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	p := start(t, "submit", "map", "--function", "sleep", "--workers", "2", "--progress", "none",
		"--iterdata", "["+strings.TrimSuffix(strings.Repeat("0.1,", 40), ",")+"]", "--dashboard", "127.0.0.1:"+strconv.Itoa(port))
	deadline := time.Now().Add(30 * time.Second)
	var jobs []struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Done  int    `json:"done"`
	}
	for {
		code, body := httpGet(base + "/api/jobs")
		if code == 200 {
			jobs = nil
			if err := json.Unmarshal([]byte(body), &jobs); err != nil {
				t.Fatal(err)
			}
			if len(jobs) == 1 && jobs[0].State == "running" && jobs[0].Done > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never listed the job running with tasks done: %d %s\n%s", code, body, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := httpGet(base + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	if v := promValues(t, body)["skein_tasks_done_total{pool=default}"]; v < 1 || v > 40 {
		t.Errorf("mid-job skein_tasks_done_total = %v", v)
	}
	if code, page := httpGet(base + "/jobs/" + jobs[0].ID); code != 200 || !strings.Contains(page, "/static/app.js") {
		t.Errorf("the job's page: %d %.200s", code, page)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("submit: %v\n%s", err, p.out.String())
	}
	if !strings.Contains(p.out.String(), "dashboard of job "+jobs[0].ID+": "+base+"/jobs/"+jobs[0].ID) {
		t.Errorf("submit did not print the job's dashboard URL:\n%s", p.out.String())
	}
}
