package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// collector records what OTLP exporters send it.
type collector struct {
	mu      sync.Mutex
	spans   []string // span names
	metrics []string // metric names
	headers []string // values of the x-skein-test header
}

func (c *collector) addTraces(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, s.Name)
			}
		}
	}
}

func (c *collector) addMetrics(req *colmetricpb.ExportMetricsServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				c.metrics = append(c.metrics, m.Name)
			}
		}
	}
}

func (c *collector) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	for _, s := range []string{"skein.job", "skein.task"} {
		if !has(c.spans, s) {
			t.Errorf("collector got spans %v, not %s", c.spans, s)
		}
	}
	for _, m := range []string{MetricPublished, MetricCompleted, MetricInFlight, MetricLatency} {
		if !has(c.metrics, m) {
			t.Errorf("collector got metrics %v, not %s", c.metrics, m)
		}
	}
	if len(c.headers) == 0 || c.headers[0] != "yes" {
		t.Errorf("header not sent: %v", c.headers)
	}
}

func emitSome(t *testing.T, cfg Config) {
	t.Helper()
	ctx := context.Background()
	cfg.Headers = map[string]string{"x-skein-test": "yes"}
	tel, shutdown, err := Setup(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	jctx, job := tel.StartJob(ctx, "j", "map", 1)
	_, task := tel.StartTask(Extract(ctx, Inject(jctx)), "j", 0, 1, "map", "w")
	task.End()
	job.End()
	tel.Metrics.Published(ctx, 1)
	tel.Metrics.Completed(ctx, 0)
	if err := shutdown(ctx); err != nil {
		t.Fatalf("shutdown (flush to the collector): %v", err)
	}
}

func TestOTLPHTTP(t *testing.T) {
	var c collector
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", 400)
			return
		}
		c.mu.Lock()
		c.headers = append(c.headers, r.Header.Get("x-skein-test"))
		c.mu.Unlock()
		switch r.URL.Path {
		case "/v1/traces":
			var req coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(data, &req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			c.addTraces(&req)
		case "/v1/metrics":
			var req colmetricpb.ExportMetricsServiceRequest
			if err := proto.Unmarshal(data, &req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			c.addMetrics(&req)
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(200)
	}))
	defer srv.Close()
	emitSome(t, Config{Exporter: ExporterOTLPHTTP, Endpoint: srv.URL, ServiceName: "test"})
	c.check(t)
}

type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	c *collector
}

func (g *grpcCollector) header(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.c.mu.Lock()
	defer g.c.mu.Unlock()
	if v := md.Get("x-skein-test"); len(v) > 0 {
		g.c.headers = append(g.c.headers, v[0])
	}
}

func (g *grpcCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.header(ctx)
	g.c.addTraces(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type grpcMetrics struct {
	colmetricpb.UnimplementedMetricsServiceServer
	g *grpcCollector
}

func (m grpcMetrics) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	m.g.header(ctx)
	m.g.c.addMetrics(req)
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func TestOTLPGRPC(t *testing.T) {
	var c collector
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	g := &grpcCollector{c: &c}
	coltracepb.RegisterTraceServiceServer(s, g)
	colmetricpb.RegisterMetricsServiceServer(s, grpcMetrics{g: g})
	go s.Serve(lis)
	defer s.Stop()
	emitSome(t, Config{Exporter: ExporterOTLPGRPC, Endpoint: lis.Addr().String(), Insecure: true, ServiceName: "test"})
	c.check(t)
}
