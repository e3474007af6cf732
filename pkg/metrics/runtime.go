package metrics

import (
	"io"
	"slices"

	"github.com/skeinrun/skein/pkg/runtime"
)

// Restarter is a function host that counts restarts of its host
// processes (pyhost.Host).
type Restarter interface {
	Restarts() int64
}

// RuntimeScrape is what a runtime's exposition reads.
type RuntimeScrape struct {
	Stats runtime.Stats
	// Hosts are the runtime's function hosts by scheme; those that are
	// Restarters are reported.
	Hosts map[string]any
	// Bus is checked for ConnStats.
	Bus any
}

// WriteRuntime writes a runtime's metrics in the Prometheus text format.
func WriteRuntime(w io.Writer, s RuntimeScrape) error {
	e := NewExpo(w)
	l := []string{"pool", s.Stats.Pool, "worker", s.Stats.Worker}
	gauge := func(name, help string, v float64) {
		e.Family(name, "gauge", help)
		e.Sample(name, v, l...)
	}
	gauge("skein_runtime_slots", "Tasks the runtime runs at once (--slots).", float64(s.Stats.Slots))
	gauge("skein_runtime_slots_busy", "Attempts running now (reducers included).", float64(s.Stats.Busy))
	gauge("skein_runtime_prefetch_depth", "Tasks taken from the bus and waiting for a slot.", float64(s.Stats.Held))
	gauge("skein_runtime_window", "Bound on tasks taken and not settled (slots plus prefetch; adaptive unless --prefetch).", float64(s.Stats.Window))
	e.Family("skein_runtime_attempts_total", "counter", "Attempts the runtime ran.")
	e.Sample("skein_runtime_attempts_total", float64(s.Stats.Ran), l...)
	var schemes []string
	for k, h := range s.Hosts {
		if _, ok := h.(Restarter); ok {
			schemes = append(schemes, k)
		}
	}
	slices.Sort(schemes)
	e.Family("skein_runtime_host_restarts_total", "counter", "Host processes (the Python interpreter of a slot) started again after one had run on the slot.")
	for _, k := range schemes {
		e.Sample("skein_runtime_host_restarts_total", float64(s.Hosts[k].(Restarter).Restarts()), append(l, "host", k)...)
	}
	if c, ok := s.Bus.(ConnStats); ok {
		e.Family("skein_bus_connected", "gauge", "1 while the runtime's bus connection is up.")
		e.Sample("skein_bus_connected", b2f(c.Connected()), l...)
		e.Family("skein_bus_reconnects_total", "counter", "Reconnections of the runtime's bus connection.")
		e.Sample("skein_bus_reconnects_total", float64(c.Reconnects()), l...)
	}
	return e.Flush()
}
