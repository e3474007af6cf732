package cli

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/metrics"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// httpFlags are the HTTP endpoint's flags of coordinator and runtime
// (docs/dashboard.md).
type httpFlags struct {
	addr   string
	public bool
}

func (h *httpFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&h.addr, "http", "", "serve "+what+" /metrics, /healthz and /readyz on this host:port (loopback unless --http-public; env SKEIN_HTTP)")
	fs.BoolVar(&h.public, "http-public", false, "allow --http on an address other than loopback")
}

func (h *httpFlags) resolve(getenv func(string) string) error {
	if h.addr == "" {
		h.addr = getenv("SKEIN_HTTP")
	}
	if h.addr == "" {
		return nil
	}
	if err := metrics.CheckAddr(h.addr, h.public); err != nil {
		return usagef("--http: %v", err)
	}
	return nil
}

// wireCoordinator makes the coordinator's metrics and hooks them into
// cfg (nil when --http is not set).
func (h *httpFlags) wireCoordinator(cfg *coordinator.Config) *metrics.Coordinator {
	if h.addr == "" {
		return nil
	}
	m := metrics.NewCoordinator()
	cfg.Observer = m
	prev := cfg.Hooks.Ended
	cfg.Hooks.Ended = func(ctx context.Context, spec *wire.JobSpec, st wire.JobStatus) {
		m.JobEnded(st)
		if prev != nil {
			prev(ctx, spec, st)
		}
	}
	return m
}

// coordinatorReady is the coordinator's readiness: serving its API, its
// bus connected, its lease held.
func coordinatorReady(c *coordinator.Coordinator, b bus.Bus, serving *atomic.Bool) func() error {
	return func() error {
		if !serving.Load() {
			return errors.New("the coordinator is not serving yet (taking up unfinished jobs)")
		}
		if cs, ok := b.(metrics.ConnStats); ok && !cs.Connected() {
			return errors.New("the bus is not connected")
		}
		if !c.LeaseHeld() {
			return errors.New("the coordinator's lease has lapsed")
		}
		return nil
	}
}

// serveCoordinator serves the coordinator's HTTP endpoints.
func (h *httpFlags) serveCoordinator(c *coordinator.Coordinator, b bus.Bus, m *metrics.Coordinator, serving *atomic.Bool, log *slog.Logger) (*metrics.Server, error) {
	mux := http.NewServeMux()
	metrics.Probes(mux, coordinatorReady(c, b, serving))
	mux.Handle("GET /metrics", m.Handler(func() metrics.Scrape { return metrics.Scrape{Jobs: c.Jobs(), Bus: b, Lease: c.LeaseHeld} }))
	return metrics.Listen(h.addr, h.public, mux, log)
}

// serveRuntime serves a runtime's HTTP endpoints: ready once it consumes
// and while its bus is connected.
func (h *httpFlags) serveRuntime(rt *runtime.Runtime, b bus.Bus, hosts map[string]any, log *slog.Logger) (*metrics.Server, error) {
	mux := http.NewServeMux()
	metrics.Probes(mux, func() error {
		if cs, ok := b.(metrics.ConnStats); ok && !cs.Connected() {
			return errors.New("the bus is not connected")
		}
		return nil
	})
	mux.Handle("GET /metrics", metrics.Handler(func(ctx context.Context, w http.ResponseWriter) error {
		return metrics.WriteRuntime(w, metrics.RuntimeScrape{Stats: rt.Stats(), Hosts: hosts, Bus: b})
	}))
	return metrics.Listen(h.addr, h.public, mux, log)
}
