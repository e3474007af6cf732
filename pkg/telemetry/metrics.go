package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Metric names.
const (
	MetricPublished = "skein.tasks.published"
	MetricCompleted = "skein.tasks.completed"
	MetricFailed    = "skein.tasks.failed"
	MetricRetried   = "skein.tasks.retried"
	MetricInFlight  = "skein.tasks.in_flight"
	MetricLatency   = "skein.task.completion_latency"
)

// LatencyBuckets are the completion-latency histogram's bounds in seconds:
// from 50 µs (event-driven completion) to 10 s (slow storage polling).
var LatencyBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2, 5, 10}

// Metrics are the coordinator's task instruments. Every method is safe for
// concurrent use and returns at once when telemetry is off. In flight is
// kept by the calls: Published adds, Completed and Failed subtract;
// Retried leaves it alone (a retried task is still in flight).
type Metrics struct {
	on        bool
	published metric.Int64Counter
	completed metric.Int64Counter
	failed    metric.Int64Counter
	retried   metric.Int64Counter
	inFlight  metric.Int64UpDownCounter
	latency   metric.Float64Histogram
}

func newMetrics(m metric.Meter) (*Metrics, error) {
	var err error
	x := &Metrics{on: true}
	fail := func(name string, e error) (*Metrics, error) {
		return nil, fmt.Errorf("telemetry: instrument %s: %w", name, e)
	}
	if x.published, err = m.Int64Counter(MetricPublished, metric.WithUnit("{task}"), metric.WithDescription("Tasks published to a work queue (first attempts)")); err != nil {
		return fail(MetricPublished, err)
	}
	if x.completed, err = m.Int64Counter(MetricCompleted, metric.WithUnit("{task}"), metric.WithDescription("Tasks recorded done")); err != nil {
		return fail(MetricCompleted, err)
	}
	if x.failed, err = m.Int64Counter(MetricFailed, metric.WithUnit("{task}"), metric.WithDescription("Tasks recorded failed for good (retries exhausted or not retryable)")); err != nil {
		return fail(MetricFailed, err)
	}
	if x.retried, err = m.Int64Counter(MetricRetried, metric.WithUnit("{task}"), metric.WithDescription("Task attempts retried by the coordinator")); err != nil {
		return fail(MetricRetried, err)
	}
	if x.inFlight, err = m.Int64UpDownCounter(MetricInFlight, metric.WithUnit("{task}"), metric.WithDescription("Tasks published and not yet recorded done or failed")); err != nil {
		return fail(MetricInFlight, err)
	}
	if x.latency, err = m.Float64Histogram(MetricLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from a task's function ending to the coordinator recording it"),
		metric.WithExplicitBucketBoundaries(LatencyBuckets...)); err != nil {
		return fail(MetricLatency, err)
	}
	return x, nil
}

// Published counts n tasks put on a work queue.
func (m *Metrics) Published(ctx context.Context, n int) {
	if !m.on {
		return
	}
	m.published.Add(ctx, int64(n))
	m.inFlight.Add(ctx, int64(n))
}

// Completed counts a task recorded done, latency after its function ended
// (Event.Finished to the coordinator's clock; negative skew counts as 0).
func (m *Metrics) Completed(ctx context.Context, latency time.Duration) {
	if !m.on {
		return
	}
	m.completed.Add(ctx, 1)
	m.inFlight.Add(ctx, -1)
	m.latency.Record(ctx, max(latency, 0).Seconds())
}

// Failed counts a task recorded failed for good; latency as in Completed.
func (m *Metrics) Failed(ctx context.Context, latency time.Duration) {
	if !m.on {
		return
	}
	m.failed.Add(ctx, 1)
	m.inFlight.Add(ctx, -1)
	m.latency.Record(ctx, max(latency, 0).Seconds())
}

// Retried counts a failed or lost attempt that is published again.
func (m *Metrics) Retried(ctx context.Context) {
	if !m.on {
		return
	}
	m.retried.Add(ctx, 1)
}

// Latency returns the time from finished (unix ns, Event.Finished) to now,
// the value Completed and Failed take.
func Latency(finished int64, now time.Time) time.Duration {
	if finished <= 0 {
		return 0
	}
	return now.Sub(time.Unix(0, finished))
}
