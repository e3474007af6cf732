// Package telemetry sets up OpenTelemetry traces and metrics for Skein's
// coordinator, runtimes and client, and carries trace context through bus
// messages.
//
// # Off by default, free when off
//
// Setup with Exporter "none" (the default) returns a Telemetry whose
// tracer and meter are OpenTelemetry's no-op providers, and whose helpers
// (StartJob, StartTask, Inject, the Metrics methods) return at once without
// allocating: the hot path pays one branch. BenchmarkOff and
// TestOffPathAllocatesNothing hold that line.
//
// # Exporters
//
//   - "stdout": spans and metrics as JSON lines on Config.Writer (stderr by
//     default: stdout carries a job's result);
//   - "otlp-http": OTLP/HTTP protobuf to Config.Endpoint (a URL such as
//     http://127.0.0.1:4318, or host:port) or to the standard
//     OTEL_EXPORTER_OTLP_ENDPOINT when empty;
//   - "otlp-grpc": OTLP/gRPC to Config.Endpoint (host:port or URL).
//
// ConfigFromEnv reads SKEIN_OTEL_EXPORTER and the standard OTEL_* variables.
//
// # Traces
//
// One trace per job. The coordinator starts the job span with StartJob
// (parented on the submitter's context, Extract(ctx, spec.Trace)), and
// puts Inject(jobCtx) into every Task.Trace it publishes. A runtime
// extracts it and starts the task span with StartTask, so spans recorded in
// runtime processes join the job's trace as children of the job span; it
// may put Inject(taskCtx) into Event.Trace so the coordinator can link
// completion handling to the task span. Trace context travels as W3C
// traceparent/tracestate (and baggage) entries in a map[string]string.
//
// # Metrics
//
// Metrics holds the instruments; their names are the Metric* constants:
// counters of tasks published, completed, failed and retried, an
// up-down counter of tasks in flight, and a histogram of completion latency
// in seconds (the function's end to the coordinator recording it).
package telemetry
