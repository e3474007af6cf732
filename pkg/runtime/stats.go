package runtime

// Stats is a runtime's state at one moment, for metrics (runtime --http).
// It is read by walking the runtime's tables: nothing is counted on the
// task path for it.
type Stats struct {
	Pool   string
	Worker string
	Slots  int
	// Busy is how many attempts are running (map and call tasks in
	// slots, reducers beside them), including those finished whose event
	// is being published.
	Busy int
	// Held is how many tasks were taken from the bus and wait for a slot
	// (the prefetch depth in use).
	Held int
	// Window is the bound on tasks taken and not settled (slots plus
	// prefetch), adaptive unless Config.Prefetch fixes it.
	Window int
	// Ran counts the attempts run since the runtime started.
	Ran int64
}

// Stats returns the runtime's state now. Safe for concurrent use.
func (r *Runtime) Stats() Stats {
	s := Stats{Pool: r.cfg.Pool, Worker: r.cfg.WorkerID, Slots: r.cfg.Slots, Ran: r.ran.Load()}
	s.Busy, s.Held = r.running.len(), r.held.len()
	s.Window = r.cfg.Slots + r.cfg.Prefetch
	if r.pacer != nil {
		s.Window, _ = r.pacer.win.Size()
	}
	return s
}
