package cli

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/skeinrun/skein/pkg/dashboard"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/metrics"
	"github.com/skeinrun/skein/pkg/wire"
)

// checkDashboard checks --dashboard: embedded mode only (a running
// coordinator serves its own with --http), on loopback.
func (m *MonitorOptions) checkDashboard(bus string) error {
	if m.Dashboard == "" {
		return nil
	}
	if bus != "" {
		return usagef("--dashboard is for embedded mode; with --bus, open the dashboard of the coordinator (coordinator --http)")
	}
	if err := metrics.CheckAddr(m.Dashboard, false); err != nil {
		return usagef("--dashboard: %v", err)
	}
	return nil
}

// wireDashboard gives the embedded coordinator its metrics when
// --dashboard is set.
func (m *MonitorOptions) wireDashboard(cfg *embedded.Config) *metrics.Coordinator {
	if m.Dashboard == "" {
		return nil
	}
	met := metrics.NewCoordinator()
	cfg.Coordinator.Observer = met
	prev := cfg.Coordinator.Hooks.Ended
	cfg.Coordinator.Hooks.Ended = func(ctx context.Context, spec *wire.JobSpec, st wire.JobStatus) {
		met.JobEnded(st)
		if prev != nil {
			prev(ctx, spec, st)
		}
	}
	return met
}

// serveEmbeddedDashboard serves the embedded coordinator's dashboard
// (read-only: Ctrl-C cancels the job) and metrics until Close.
func serveEmbeddedDashboard(addr string, cl *embedded.Cluster, met *metrics.Coordinator, log *slog.Logger) (*metrics.Server, error) {
	b := cl.Client.Bus()
	d, err := dashboard.New(dashboard.Config{Coordinator: cl.Coordinator, Events: b, Logger: log})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	metrics.Probes(mux, func() error { return nil })
	mux.Handle("GET /metrics", met.Handler(func() metrics.Scrape {
		return metrics.Scrape{Jobs: cl.Coordinator.Jobs(), Bus: b, Lease: cl.Coordinator.LeaseHeld}
	}))
	mux.Handle("/", d)
	return metrics.Listen(addr, false, mux, log)
}
