package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Exporter names.
const (
	ExporterNone     = "none"
	ExporterStdout   = "stdout"
	ExporterOTLPHTTP = "otlp-http"
	ExporterOTLPGRPC = "otlp-grpc"
)

// InstrumentationName names Skein's tracer and meter.
const InstrumentationName = "github.com/skeinrun/skein"

// Config chooses where telemetry goes.
type Config struct {
	// Exporter is none (default), stdout, otlp-http or otlp-grpc.
	Exporter string
	// Endpoint is the OTLP collector: a URL (http://host:4318) or
	// host:port. Empty means the OTEL_EXPORTER_OTLP_* environment or the
	// exporter's default (localhost:4318 / localhost:4317).
	Endpoint string
	// Insecure disables TLS for a host:port endpoint (a URL's scheme
	// decides by itself).
	Insecure bool
	// Headers are sent with every OTLP export (e.g. an API key). They are
	// never logged.
	Headers map[string]string
	// ServiceName is the service.name resource attribute
	// (skein-coordinator, skein-runtime, skein-submit).
	ServiceName string
	// SampleRatio is the share of new traces sampled, in (0, 1]; 0 means 1.
	// Child spans follow their parent's decision.
	SampleRatio float64
	// MetricInterval is how often metrics are exported (default 10 s).
	MetricInterval time.Duration
	// Writer receives the stdout exporter's JSON (default os.Stderr).
	Writer io.Writer
}

// DefaultConfig is telemetry off.
func DefaultConfig() Config {
	return Config{Exporter: ExporterNone, ServiceName: "skein", SampleRatio: 1, MetricInterval: 10 * time.Second}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Exporter == "" {
		c.Exporter = d.Exporter
	}
	if c.ServiceName == "" {
		c.ServiceName = d.ServiceName
	}
	if c.SampleRatio == 0 {
		c.SampleRatio = d.SampleRatio
	}
	if c.MetricInterval == 0 {
		c.MetricInterval = d.MetricInterval
	}
	if c.Writer == nil {
		c.Writer = os.Stderr
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	switch c.Exporter {
	case "", ExporterNone, ExporterStdout, ExporterOTLPHTTP, ExporterOTLPGRPC:
	default:
		errs = append(errs, fmt.Errorf("telemetry: Exporter %q is not none, stdout, otlp-http or otlp-grpc", c.Exporter))
	}
	if c.Endpoint != "" {
		if strings.Contains(c.Endpoint, "://") {
			u, err := url.Parse(c.Endpoint)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				errs = append(errs, fmt.Errorf("telemetry: Endpoint is not an http(s) URL with a host"))
			}
		} else if strings.ContainsAny(c.Endpoint, "/@ ") || !strings.Contains(c.Endpoint, ":") {
			errs = append(errs, fmt.Errorf("telemetry: Endpoint %q is not host:port or a URL", c.Endpoint))
		}
		if c.Exporter == ExporterStdout || c.Exporter == ExporterNone || c.Exporter == "" {
			errs = append(errs, fmt.Errorf("telemetry: Endpoint is set but Exporter %q does not use one", c.Exporter))
		}
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("telemetry: SampleRatio %v is outside (0, 1]", c.SampleRatio))
	}
	if c.MetricInterval < 0 || c.MetricInterval > 0 && c.MetricInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("telemetry: MetricInterval %v is under 100ms", c.MetricInterval))
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			errs = append(errs, fmt.Errorf("telemetry: Headers has a bad header name %q", k))
		}
	}
	return errors.Join(errs...)
}

// Environment variables read by ConfigFromEnv.
const (
	EnvExporter       = "SKEIN_OTEL_EXPORTER"         // none|stdout|otlp-http|otlp-grpc
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT" // standard
	EnvInsecure       = "OTEL_EXPORTER_OTLP_INSECURE" // standard: true|false
	EnvServiceName    = "OTEL_SERVICE_NAME"           // standard
	EnvSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"     // standard: ratio for parentbased_traceidratio
	EnvMetricInterval = "OTEL_METRIC_EXPORT_INTERVAL" // standard: milliseconds
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL" // standard: grpc|http/protobuf, used when SKEIN_OTEL_EXPORTER is "otlp"
)

// ConfigFromEnv fills a Config from the environment (getenv is os.Getenv
// in production), over defaultService as the service name. Flags given on
// the command line should override what it returns. SKEIN_OTEL_EXPORTER=otlp
// picks the protocol from OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf by
// default, as the specification says).
func ConfigFromEnv(getenv func(string) string, defaultService string) (Config, error) {
	c := DefaultConfig()
	c.ServiceName = defaultService
	var errs []error
	if v := getenv(EnvExporter); v != "" {
		c.Exporter = strings.ToLower(v)
		if c.Exporter == "otlp" {
			switch p := getenv(EnvProtocol); p {
			case "grpc":
				c.Exporter = ExporterOTLPGRPC
			case "", "http/protobuf":
				c.Exporter = ExporterOTLPHTTP
			default:
				errs = append(errs, fmt.Errorf("%s: %q is not grpc or http/protobuf", EnvProtocol, p))
			}
		}
	}
	// The OTLP exporters read OTEL_EXPORTER_OTLP_ENDPOINT themselves; keep
	// it here too so Validate checks it and it shows in --help output.
	if v := getenv(EnvEndpoint); v != "" && (c.Exporter == ExporterOTLPHTTP || c.Exporter == ExporterOTLPGRPC) {
		c.Endpoint = v
	}
	if v := getenv(EnvInsecure); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not true or false", EnvInsecure, v))
		}
		c.Insecure = b
	}
	if v := getenv(EnvServiceName); v != "" {
		c.ServiceName = v
	}
	if v := getenv(EnvSamplerArg); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 1 {
			errs = append(errs, fmt.Errorf("%s: %q is not a ratio in (0, 1]", EnvSamplerArg, v))
		} else {
			c.SampleRatio = r
		}
	}
	if v := getenv(EnvMetricInterval); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 100 {
			errs = append(errs, fmt.Errorf("%s: %q is not a number of milliseconds >= 100", EnvMetricInterval, v))
		} else {
			c.MetricInterval = time.Duration(ms) * time.Millisecond
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Telemetry holds the providers and Skein's instruments. The zero value is
// not usable: use Setup or Off.
type Telemetry struct {
	on      bool
	tp      trace.TracerProvider
	mp      metric.MeterProvider
	tracer  trace.Tracer
	Metrics *Metrics
}

// Off returns a Telemetry that records nothing and costs nothing.
func Off() *Telemetry {
	tp := tracenoop.NewTracerProvider()
	return &Telemetry{tp: tp, mp: metricnoop.NewMeterProvider(), tracer: tp.Tracer(InstrumentationName), Metrics: &Metrics{}}
}

// Setup builds the providers cfg asks for. The returned shutdown flushes
// and stops the exporters; call it before the process exits (it is a no-op
// when telemetry is off). Setup does not touch OpenTelemetry's global
// providers: pass the Telemetry to what needs it.
func Setup(ctx context.Context, cfg Config) (*Telemetry, func(context.Context) error, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	cfg.setDefaults()
	if cfg.Exporter == ExporterNone {
		return Off(), func(context.Context) error { return nil }, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", cfg.ServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
	)
	if err != nil && res == nil {
		return nil, nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	spanExp, metricExp, err := exporters(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(spanExp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp, sdkmetric.WithInterval(cfg.MetricInterval))),
		sdkmetric.WithResource(res),
	)
	t := &Telemetry{on: true, tp: tp, mp: mp, tracer: tp.Tracer(InstrumentationName)}
	t.Metrics, err = newMetrics(mp.Meter(InstrumentationName))
	if err != nil {
		return nil, nil, errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	shutdown := func(ctx context.Context) error {
		// Spans first: their export may be what the caller waits for.
		return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	return t, shutdown, nil
}

func exporters(ctx context.Context, cfg Config) (sdktrace.SpanExporter, sdkmetric.Exporter, error) {
	isURL := strings.Contains(cfg.Endpoint, "://")
	switch cfg.Exporter {
	case ExporterStdout:
		se, err := stdouttrace.New(stdouttrace.WithWriter(cfg.Writer))
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: stdout span exporter: %w", err)
		}
		me, err := stdoutmetric.New(stdoutmetric.WithWriter(cfg.Writer))
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: stdout metric exporter: %w", err)
		}
		return se, me, nil
	case ExporterOTLPHTTP:
		var topts []otlptracehttp.Option
		var mopts []otlpmetrichttp.Option
		if cfg.Endpoint != "" {
			if isURL {
				topts = append(topts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(cfg.Endpoint, "/")+"/v1/traces"))
				mopts = append(mopts, otlpmetrichttp.WithEndpointURL(strings.TrimSuffix(cfg.Endpoint, "/")+"/v1/metrics"))
			} else {
				topts = append(topts, otlptracehttp.WithEndpoint(cfg.Endpoint))
				mopts = append(mopts, otlpmetrichttp.WithEndpoint(cfg.Endpoint))
			}
		}
		if cfg.Insecure {
			topts = append(topts, otlptracehttp.WithInsecure())
			mopts = append(mopts, otlpmetrichttp.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			topts = append(topts, otlptracehttp.WithHeaders(cfg.Headers))
			mopts = append(mopts, otlpmetrichttp.WithHeaders(cfg.Headers))
		}
		se, err := otlptracehttp.New(ctx, topts...)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: otlp-http span exporter: %w", err)
		}
		me, err := otlpmetrichttp.New(ctx, mopts...)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: otlp-http metric exporter: %w", err)
		}
		return se, me, nil
	case ExporterOTLPGRPC:
		var topts []otlptracegrpc.Option
		var mopts []otlpmetricgrpc.Option
		if cfg.Endpoint != "" {
			if isURL {
				topts = append(topts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
				mopts = append(mopts, otlpmetricgrpc.WithEndpointURL(cfg.Endpoint))
			} else {
				topts = append(topts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
				mopts = append(mopts, otlpmetricgrpc.WithEndpoint(cfg.Endpoint))
			}
		}
		if cfg.Insecure {
			topts = append(topts, otlptracegrpc.WithInsecure())
			mopts = append(mopts, otlpmetricgrpc.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			topts = append(topts, otlptracegrpc.WithHeaders(cfg.Headers))
			mopts = append(mopts, otlpmetricgrpc.WithHeaders(cfg.Headers))
		}
		se, err := otlptracegrpc.New(ctx, topts...)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: otlp-grpc span exporter: %w", err)
		}
		me, err := otlpmetricgrpc.New(ctx, mopts...)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: otlp-grpc metric exporter: %w", err)
		}
		return se, me, nil
	}
	return nil, nil, fmt.Errorf("telemetry: Exporter %q has no exporter", cfg.Exporter)
}

// Enabled reports whether anything is recorded.
func (t *Telemetry) Enabled() bool { return t.on }

// TracerProvider is for libraries that take one (e.g. an instrumented HTTP
// client).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider is for libraries that take one.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Tracer is Skein's tracer, for spans the helpers below do not cover.
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// noSpan is returned when telemetry is off: a non-recording span that
// costs nothing to End.
var noSpan = trace.SpanFromContext(context.Background())

// Span attribute keys.
const (
	AttrJob     = attribute.Key("skein.job")
	AttrJobKind = attribute.Key("skein.job.kind")
	AttrTasks   = attribute.Key("skein.job.tasks")
	AttrTask    = attribute.Key("skein.task")
	AttrAttempt = attribute.Key("skein.task.attempt")
	AttrKind    = attribute.Key("skein.task.kind")
	AttrWorker  = attribute.Key("skein.worker")
)

// StartJob starts the job span "skein.job" (a child of ctx's span, e.g.
// the submitter's context from Extract(ctx, spec.Trace)). When telemetry
// is off it returns ctx unchanged and a no-op span, allocating nothing.
func (t *Telemetry) StartJob(ctx context.Context, job, kind string, tasks int) (context.Context, trace.Span) {
	if !t.on {
		return ctx, noSpan
	}
	return t.tracer.Start(ctx, "skein.job", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrJob.String(job), AttrJobKind.String(kind), AttrTasks.Int(tasks)))
}

// StartTask starts a task attempt's span "skein.task" in the runtime, as a
// child of ctx's span (Extract(ctx, task.Trace): the job span). Off, it
// returns ctx and a no-op span without allocating.
func (t *Telemetry) StartTask(ctx context.Context, job string, task, attempt int, kind, worker string) (context.Context, trace.Span) {
	if !t.on {
		return ctx, noSpan
	}
	return t.tracer.Start(ctx, "skein.task", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(AttrJob.String(job), AttrTask.Int(task), AttrAttempt.Int(attempt), AttrKind.String(kind), AttrWorker.String(worker)))
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Inject returns ctx's trace context as W3C entries (traceparent,
// tracestate, baggage) for Task.Trace, Event.Trace or JobSpec.Trace, or nil
// when ctx carries no sampled-or-not span context (always the case when
// telemetry is off: nothing is allocated then).
func Inject(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	m := make(map[string]string, 2)
	propagator.Inject(ctx, propagation.MapCarrier(m))
	return m
}

// Extract returns ctx with the remote span context held in m (from
// Inject), or ctx itself when m holds none or is malformed. m is outside
// input: bad entries are ignored, never trusted.
func Extract(ctx context.Context, m map[string]string) context.Context {
	if len(m) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(m))
}
