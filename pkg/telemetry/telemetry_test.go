package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// childEnv makes the test binary act as a runtime process: it reads tasks
// with their trace context on stdin and writes its spans on stdout.
const childEnv = "SKEIN_TELEMETRY_TEST_CHILD"

type childTask struct {
	Task  int               `json:"task"`
	Trace map[string]string `json:"trace"`
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild is the runtime side: one task span per task, joined to the
// job's trace through the map it got, with a function span inside.
func runChild() error {
	ctx := context.Background()
	tel, shutdown, err := Setup(ctx, Config{Exporter: ExporterStdout, ServiceName: "skein-runtime", Writer: os.Stdout})
	if err != nil {
		return err
	}
	var tasks []childTask
	if err := json.NewDecoder(os.Stdin).Decode(&tasks); err != nil {
		return fmt.Errorf("read tasks: %w", err)
	}
	for _, tk := range tasks {
		tctx := Extract(ctx, tk.Trace)
		tctx, span := tel.StartTask(tctx, "job-1", tk.Task, 1, "map", fmt.Sprintf("pid-%d", os.Getpid()))
		_, fn := tel.Tracer().Start(tctx, "skein.function")
		fn.End()
		var ferr error
		if tk.Task == 2 {
			ferr = errors.New("ValueError: bad input")
		}
		End(span, ferr)
	}
	return shutdown(ctx)
}

// spanRec is the part of the stdout exporter's JSON the test reads.
type spanRec struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct {
		TraceID, SpanID string
		Remote          bool
	}
	Status     struct{ Code string }
	Attributes []struct {
		Key   string
		Value struct{ Value any }
	}
	Resource []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s spanRec) attr(k string) any {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.Value
		}
	}
	return nil
}

func (s spanRec) service() any {
	for _, a := range s.Resource {
		if a.Key == "service.name" {
			return a.Value.Value
		}
	}
	return nil
}

func decodeSpans(t *testing.T, r io.Reader) []spanRec {
	t.Helper()
	var out []spanRec
	dec := json.NewDecoder(r)
	for {
		var s spanRec
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode span: %v", err)
		}
		out = append(out, s)
	}
}

// TestTraceAcrossProcesses: the job span lives in this process, the task
// spans in a real subprocess that gets the trace context as a
// map[string]string on its stdin; all join one trace with the right
// parents.
func TestTraceAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	var sb testenv.Buffer // the span and metric exporters write from their own goroutines
	tel, shutdown, err := Setup(ctx, Config{Exporter: ExporterStdout, ServiceName: "skein-coordinator", Writer: &sb})
	if err != nil {
		t.Fatal(err)
	}
	// The submitter's context arrives in JobSpec.Trace.
	subCtx, sub := tel.Tracer().Start(ctx, "submit")
	spec := Inject(subCtx)
	jctx, job := tel.StartJob(Extract(ctx, spec), "job-1", "map", 5)
	var tasks []childTask
	for i := 0; i < 5; i++ {
		tasks = append(tasks, childTask{Task: i, Trace: Inject(jctx)})
	}
	if tp := tasks[0].Trace["traceparent"]; !strings.HasPrefix(tp, "00-") || len(tp) != 55 {
		t.Fatalf("traceparent = %q", tp)
	}
	in, _ := json.Marshal(tasks)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin = bytes.NewReader(in)
	var cout, cerr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &cout, &cerr
	if err := cmd.Run(); err != nil {
		t.Fatalf("runtime process: %v\n%s", err, cerr.String())
	}
	job.End()
	sub.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	parent := decodeSpans(t, strings.NewReader(sb.String()))
	child := decodeSpans(t, &cout)
	var jobSpan, subSpan spanRec
	for _, s := range parent {
		switch s.Name {
		case "skein.job":
			jobSpan = s
		case "submit":
			subSpan = s
		}
	}
	if jobSpan.Name == "" || subSpan.Name == "" {
		t.Fatalf("coordinator spans: %+v", parent)
	}
	traceID := subSpan.SpanContext.TraceID
	if jobSpan.SpanContext.TraceID != traceID || jobSpan.Parent.SpanID != subSpan.SpanContext.SpanID {
		t.Errorf("job span %+v is not a child of the submit span %+v", jobSpan.SpanContext, subSpan.SpanContext)
	}
	if jobSpan.attr("skein.job") != "job-1" || jobSpan.service() != "skein-coordinator" {
		t.Errorf("job span attributes %+v, service %v", jobSpan.Attributes, jobSpan.service())
	}
	taskSpans := map[string]spanRec{} // span id -> task span
	seen := map[float64]bool{}
	for _, s := range child {
		if s.Name != "skein.task" {
			continue
		}
		taskSpans[s.SpanContext.SpanID] = s
		if s.SpanContext.TraceID != traceID {
			t.Errorf("task span in trace %s, want %s", s.SpanContext.TraceID, traceID)
		}
		if s.Parent.SpanID != jobSpan.SpanContext.SpanID || !s.Parent.Remote {
			t.Errorf("task span parent %+v, want the job span %s (remote)", s.Parent, jobSpan.SpanContext.SpanID)
		}
		if s.service() != "skein-runtime" {
			t.Errorf("task span service %v", s.service())
		}
		n, _ := s.attr("skein.task").(float64)
		seen[n] = true
		if wantErr := n == 2; wantErr != (s.Status.Code == "Error") {
			t.Errorf("task %v status %q", n, s.Status.Code)
		}
	}
	if len(taskSpans) != 5 || len(seen) != 5 {
		t.Fatalf("%d task spans for %d tasks, want 5: %s", len(taskSpans), len(seen), cout.String())
	}
	fns := 0
	for _, s := range child {
		if s.Name == "skein.function" {
			fns++
			if _, ok := taskSpans[s.Parent.SpanID]; !ok || s.SpanContext.TraceID != traceID {
				t.Errorf("function span %+v is not under a task span", s.SpanContext)
			}
		}
	}
	if fns != 5 {
		t.Errorf("%d function spans, want 5", fns)
	}
}

func TestMetricsStdout(t *testing.T) {
	ctx := context.Background()
	var sb testenv.Buffer
	tel, shutdown, err := Setup(ctx, Config{Exporter: ExporterStdout, Writer: &sb})
	if err != nil {
		t.Fatal(err)
	}
	m := tel.Metrics
	m.Published(ctx, 10)
	for i := 0; i < 6; i++ {
		m.Completed(ctx, time.Duration(i+1)*100*time.Microsecond)
	}
	m.Retried(ctx)
	m.Retried(ctx)
	m.Failed(ctx, 3*time.Millisecond)
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The last metrics document holds the cumulative values.
	var doc struct {
		ScopeMetrics []struct {
			Metrics []struct {
				Name string
				Data struct {
					DataPoints []struct {
						Value any
						Count uint64
						Sum   float64
					}
				}
			}
		}
	}
	sc := bufio.NewScanner(strings.NewReader(sb.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found := false
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(MetricPublished)) {
			if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no metrics in stdout output: %s", sb.String())
	}
	got := map[string]float64{}
	var latCount uint64
	var latSum float64
	for _, sm := range doc.ScopeMetrics {
		for _, mt := range sm.Metrics {
			for _, dp := range mt.Data.DataPoints {
				if v, ok := dp.Value.(float64); ok {
					got[mt.Name] += v
				}
				if mt.Name == MetricLatency {
					latCount, latSum = dp.Count, dp.Sum
				}
			}
		}
	}
	want := map[string]float64{MetricPublished: 10, MetricCompleted: 6, MetricFailed: 1, MetricRetried: 2, MetricInFlight: 3}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if latCount != 7 || latSum < 0.0050 || latSum > 0.0052 {
		t.Errorf("latency histogram count %d sum %v, want 7 and 0.0051 s", latCount, latSum)
	}
}

// TestOffPathAllocatesNothing checks the promise that telemetry off costs
// nothing on the hot path.
func TestOffPathAllocatesNothing(t *testing.T) {
	tel, shutdown, err := Setup(context.Background(), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if tel.Enabled() {
		t.Fatal("default config is on")
	}
	ctx := context.Background()
	var trace map[string]string
	allocs := testing.AllocsPerRun(1000, func() { trace = hotPath(ctx, tel, trace) })
	if allocs != 0 {
		t.Errorf("off path allocates %v times per task", allocs)
	}
	if trace != nil {
		t.Errorf("off path injected %v", trace)
	}
}

// hotPath is what the coordinator and a runtime do per task.
func hotPath(ctx context.Context, tel *Telemetry, in map[string]string) map[string]string {
	tel.Metrics.Published(ctx, 1)
	tctx, span := tel.StartTask(Extract(ctx, in), "job", 1, 1, "map", "w")
	out := Inject(tctx)
	End(span, nil)
	tel.Metrics.Completed(ctx, time.Millisecond)
	tel.Metrics.Retried(ctx)
	return out
}

func BenchmarkOff(b *testing.B) {
	tel := Off()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		hotPath(ctx, tel, nil)
	}
}

func BenchmarkOnStdoutDiscard(b *testing.B) {
	ctx := context.Background()
	tel, shutdown, err := Setup(ctx, Config{Exporter: ExporterStdout, Writer: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(ctx)
	jctx, job := tel.StartJob(ctx, "job", "map", b.N)
	defer job.End()
	tr := Inject(jctx)
	b.ReportAllocs()
	for b.Loop() {
		hotPath(ctx, tel, tr)
	}
}

func TestConfig(t *testing.T) {
	bad := Config{Exporter: "zipkin", Endpoint: "ftp://x", SampleRatio: 2, MetricInterval: time.Millisecond, Headers: map[string]string{"a b": "c"}}
	err := bad.Validate()
	for _, w := range []string{"Exporter", "Endpoint", "SampleRatio", "MetricInterval", "Headers"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate = %v, does not name %s", err, w)
		}
	}
	if err := (Config{Exporter: ExporterStdout, Endpoint: "127.0.0.1:4318"}).Validate(); err == nil {
		t.Error("an endpoint for the stdout exporter was accepted")
	}
	for _, ok := range []Config{{}, DefaultConfig(), {Exporter: ExporterOTLPGRPC, Endpoint: "127.0.0.1:4317", Insecure: true}, {Exporter: ExporterOTLPHTTP, Endpoint: "https://otel.example:4318"}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", ok, err)
		}
	}

	env := map[string]string{EnvExporter: "otlp", EnvProtocol: "grpc", EnvEndpoint: "http://127.0.0.1:4317",
		EnvServiceName: "svc", EnvSamplerArg: "0.25", EnvMetricInterval: "2000", EnvInsecure: "true"}
	c, err := ConfigFromEnv(func(k string) string { return env[k] }, "skein-coordinator")
	if err != nil {
		t.Fatal(err)
	}
	if c.Exporter != ExporterOTLPGRPC || c.Endpoint != "http://127.0.0.1:4317" || c.ServiceName != "svc" || c.SampleRatio != 0.25 || c.MetricInterval != 2*time.Second || !c.Insecure {
		t.Errorf("ConfigFromEnv = %+v", c)
	}
	c, err = ConfigFromEnv(func(string) string { return "" }, "skein-runtime")
	if err != nil || c.Exporter != ExporterNone || c.ServiceName != "skein-runtime" {
		t.Errorf("empty env: %+v, %v", c, err)
	}
	env = map[string]string{EnvExporter: "otlp", EnvProtocol: "thrift", EnvSamplerArg: "x", EnvMetricInterval: "5", EnvInsecure: "maybe"}
	_, err = ConfigFromEnv(func(k string) string { return env[k] }, "s")
	for _, w := range []string{EnvProtocol, EnvSamplerArg, EnvMetricInterval, EnvInsecure} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("ConfigFromEnv error %v does not name %s", err, w)
		}
	}
}

func TestExtractIgnoresGarbage(t *testing.T) {
	ctx := context.Background()
	for _, m := range []map[string]string{
		nil,
		{"traceparent": "garbage"},
		{"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
		{"traceparent": strings.Repeat("f", 10000)},
	} {
		if got := Inject(Extract(ctx, m)); got != nil {
			t.Errorf("Extract(%v) produced a span context: %v", m, got)
		}
	}
}
