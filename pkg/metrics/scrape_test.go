package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/metrics"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// stack is an in-process NATS server, a coordinator with metrics and one
// real runtime, and the coordinator's /metrics on an HTTP server.
type stack struct {
	c      *coordinator.Coordinator
	cl     *client.Client
	m      *metrics.Coordinator
	url    string
	bus    *natsbus.Bus
	called sync.Map // flaky: x -> calls
}

func newStack(t *testing.T) *stack {
	t.Helper()
	srv := natstest.Server(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator", Logger: log})
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime", Logger: log})

	var err error
	s := &stack{m: metrics.NewCoordinator(), bus: cb}
	cfg := coordinator.Config{Observer: s.m, Logger: log}
	cfg.Hooks.Ended = func(_ context.Context, _ *wire.JobSpec, st wire.JobStatus) { s.m.JobEnded(st) }
	if s.c, err = coordinator.New(cb, cfg); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	if err := s.c.Serve(rctx); err != nil {
		t.Fatal(err)
	}

	// flaky sleeps x ms and fails the first call of every x that is a
	// multiple of 10 (retryable, as a user error is); "boom" always fails.
	reg := fn.Builtins()
	reg.Register(fn.Spec{Name: "flaky", Params: []string{"x"}, Run: func(ctx context.Context, a *fn.Args) (any, error) {
		var x int
		if err := a.Get("x", &x); err != nil {
			return nil, err
		}
		n, _ := s.called.LoadOrStore(x, new(int))
		time.Sleep(time.Duration(x%7+40) * time.Millisecond)
		if x%10 == 0 && *n.(*int) == 0 {
			*n.(*int) = 1
			return nil, fmt.Errorf("flaky %d: first call fails", x)
		}
		return x, nil
	}})
	rt, err := runtime.New(rb, runtime.Config{Slots: 8, Registry: reg, WorkerID: "rt-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done; s.c.Close() })

	hs := httptest.NewServer(s.m.Handler(func() metrics.Scrape {
		return metrics.Scrape{Jobs: s.c.Jobs(), Bus: cb, Lease: s.c.LeaseHeld}
	}))
	t.Cleanup(hs.Close)
	s.url = hs.URL
	s.cl = client.New(cb)
	return s
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

// scrape fetches /metrics and parses it with Prometheus' own parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	return fams
}

// value returns the sample of family name whose labels include want
// (name=value pairs); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func iterdata(n int) wire.Value {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	b, _ := json.Marshal(xs)
	return b
}

// TestScrapeDuringJob runs a 300-task map job (30 tasks fail once and are
// retried) on a real runtime, scrapes /metrics while it runs and after,
// parses every scrape with Prometheus' text parser, and checks the
// counters against the job's final status; then a job whose task fails
// for good.
func TestScrapeDuringJob(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 300
	id, err := s.cl.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "flaky", Iterdata: iterdata(n), Retries: 2})
	if err != nil {
		t.Fatal(err)
	}

	// While it runs: the job is running, some tasks are done and not all.
	var mid map[string]*dto.MetricFamily
	for {
		if ctx.Err() != nil {
			t.Fatal("the job never showed running with tasks done in a scrape")
		}
		f := scrape(t, s.url+"/metrics")
		d := value(f, "skein_tasks_done_total", "pool", "default")
		if value(f, "skein_jobs", "state", "running") == 1 && d > 0 && d < n {
			mid = f
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("mid-job: done %v, started %v, queue depth %v, runtimes %v", value(mid, "skein_tasks_done_total"), value(mid, "skein_tasks_started_total"),
		value(mid, "skein_queue_depth", "pool", "default"), value(mid, "skein_runtimes_active"))
	if q := value(mid, "skein_queue_depth", "pool", "default"); q < 0 || q > n {
		t.Errorf("mid-job queue depth %v, want 0..%d", q, n)
	}

	st, err := s.cl.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone {
		t.Fatalf("job ended %v %v", st.State, err)
	}
	// The coordinator counts a job's end (its Ended hook) just after it
	// records the end that Wait reads: scrape until the count is there.
	f := scrapeUntil(t, s.url+"/metrics", "skein_jobs_ended_total", "state", "done")
	p := []string{"pool", "default"}
	checks := []struct {
		name string
		got  float64
		want int
	}{
		{"skein_tasks_published_total", value(f, "skein_tasks_published_total", p...), st.Total},
		{"skein_tasks_done_total", value(f, "skein_tasks_done_total", p...), st.Done},
		{"skein_tasks_retried_total", value(f, "skein_tasks_retried_total", p...), st.Retried},
		{"skein_tasks_failed_total", value(f, "skein_tasks_failed_total", p...), st.Failed},
		{"skein_task_completion_latency_seconds (count)", value(f, "skein_task_completion_latency_seconds", p...), st.Done + st.Failed},
		{"skein_task_duration_seconds (count)", value(f, "skein_task_duration_seconds", p...), st.Done + st.Failed + st.Retried},
		{"skein_jobs{state=done}", value(f, "skein_jobs", "state", "done"), 1},
		{"skein_jobs{state=running}", value(f, "skein_jobs", "state", "running"), 0},
		{"skein_jobs_ended_total{state=done}", value(f, "skein_jobs_ended_total", "state", "done"), 1},
		{"skein_runtimes_active", value(f, "skein_runtimes_active", p...), 1},
		{"skein_queue_depth{pool=default}", value(f, "skein_queue_depth", p...), 0},
		{"skein_bus_connected", value(f, "skein_bus_connected"), 1},
		{"skein_coordinator_lease_held", value(f, "skein_coordinator_lease_held"), 1},
	}
	for _, c := range checks {
		if c.got != float64(c.want) {
			t.Errorf("%s = %v, want %d (final status %+v)", c.name, c.got, c.want, st)
		}
	}
	if st.Total != n || st.Retried != n/10 {
		t.Errorf("final status %+v: want %d tasks, %d retried", st, n, n/10)
	}
	// Tasks run 40-46 ms, past the runtime's 20 ms started-after: most
	// report their start; every attempt ran between 40 ms and a second.
	if sv := value(f, "skein_tasks_started_total", p...); sv < float64(n)/2 || sv > float64(st.Done+st.Retried) {
		t.Errorf("skein_tasks_started_total = %v, want %d..%d", sv, n/2, st.Done+st.Retried)
	}
	h := f["skein_task_duration_seconds"].Metric[0].Histogram
	if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean < 0.04 || mean > 1 {
		t.Errorf("mean task duration %vs, want 0.04..1", mean)
	}

	// A task that fails for good fails its job.
	id, err = s.cl.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Function: "fail", Data: wire.Value(`{"message":"boom"}`)})
	if err != nil {
		t.Fatal(err)
	}
	st, err = s.cl.Wait(ctx, id)
	var je *client.JobError
	if st.State != wire.StateFailed || (err != nil && !errors.As(err, &je)) {
		t.Fatalf("the failing job ended %v %v", st.State, err)
	}
	f = scrapeUntil(t, s.url+"/metrics", "skein_jobs_ended_total", "state", "failed")
	if got := value(f, "skein_tasks_failed_total", p...); got != 1 {
		t.Errorf("skein_tasks_failed_total = %v after a failed call, want 1", got)
	}
	if got := value(f, "skein_jobs_ended_total", "state", "failed"); got != 1 {
		t.Errorf("skein_jobs_ended_total{state=failed} = %v, want 1", got)
	}
	if got := value(f, "skein_tasks_published_total", p...); got != n+1 {
		t.Errorf("skein_tasks_published_total = %v, want %d", got, n+1)
	}
}

// scrapeUntil scrapes url until the metric name with the label pair is at
// least 1 (or 10 s have passed: the checks that follow then say what is
// wrong) and returns the last scrape.
func scrapeUntil(t *testing.T, url, name string, label ...string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := scrape(t, url)
		if value(f, name, label...) >= 1 || time.Now().After(deadline) {
			return f
		}
		time.Sleep(20 * time.Millisecond)
	}
}
