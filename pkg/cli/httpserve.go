package cli

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/dashboard"
	"github.com/skeinrun/skein/pkg/metrics"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// httpFlags are the HTTP endpoint's flags of coordinator and runtime
// (docs/dashboard.md).
type httpFlags struct {
	addr   string
	public bool

	// The coordinator's dashboard.
	dashboard   bool
	tokenFile   string
	token       string
	userHeader  string
	cancelUsers string
}

func (h *httpFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&h.addr, "http", "", "serve "+what+" /metrics, /healthz and /readyz on this host:port (loopback unless --http-public; env SKEIN_HTTP)")
	fs.BoolVar(&h.public, "http-public", false, "allow --http on an address other than loopback")
}

// registerDashboard adds the dashboard's access flags (coordinator).
func (h *httpFlags) registerDashboard(fs *flag.FlagSet) {
	h.dashboard = true
	fs.StringVar(&h.tokenFile, "http-token-file", "", "file holding the dashboard's token (env SKEIN_HTTP_TOKEN holds it directly): whoever presents it may cancel jobs")
	fs.StringVar(&h.userHeader, "http-user-header", "", "header a reverse proxy sets to the signed-in user (e.g. X-Forwarded-User); the proxy must strip it from clients' requests")
	fs.StringVar(&h.cancelUsers, "http-cancel-users", "", "users of --http-user-header who may cancel jobs, comma-separated (* for all)")
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
	if !h.dashboard {
		return nil
	}
	h.token = getenv("SKEIN_HTTP_TOKEN")
	if h.tokenFile != "" {
		b, err := os.ReadFile(h.tokenFile)
		if err != nil {
			return usagef("--http-token-file: %v", err)
		}
		h.token = strings.TrimSpace(string(b))
	}
	if h.token != "" && len(h.token) < 16 {
		return usagef("the dashboard token (SKEIN_HTTP_TOKEN or --http-token-file) is shorter than 16 characters")
	}
	if h.cancelUsers != "" && h.userHeader == "" {
		return usagef("--http-cancel-users needs --http-user-header")
	}
	return nil
}

// auth is the dashboard's access: reading needs credentials only on a
// public address where some are configured.
func (h *httpFlags) auth() dashboard.Auth {
	a := dashboard.Auth{Token: h.token, UserHeader: h.userHeader}
	for _, u := range strings.Split(h.cancelUsers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			a.CancelUsers = append(a.CancelUsers, u)
		}
	}
	a.ReadNeedsAuth = h.public && (h.token != "" || h.userHeader != "")
	return a
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
	d, err := dashboard.New(dashboard.Config{Coordinator: c, Events: b, Auth: h.auth(), Logger: log})
	if err != nil {
		return nil, err
	}
	mux.Handle("/", d)
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
