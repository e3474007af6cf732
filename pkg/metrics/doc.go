// Package metrics exposes Skein's coordinator and runtime metrics in the
// Prometheus text format (version 0.0.4), written here without a client
// library, and serves them with the Kubernetes probes (/healthz, /readyz)
// on a loopback address unless asked otherwise (CheckAddr).
//
// # Coordinator
//
// Coordinator implements coordinator.Observer: the coordinator calls its
// per-pool counters for every first attempt published and every task
// event it records. Those calls are a few atomic operations each, with no
// lock and no allocation (the histograms are fixed buckets of atomic
// counters, the set of runtimes seen a lock-free table of name hashes), so
// that the event loop pays next to nothing for them. Jobs by state, queue
// depth per pool and the bus connection are read at scrape time from the
// coordinator (Scrape.Jobs) and from the bus (QueueDepther, ConnStats,
// found by type assertion; natsbus and rabbitmq implement both).
//
// # Runtime
//
// WriteRuntime reads runtime.Stats (slots busy, prefetch depth, window,
// attempts) and the hosts' restart counts (Restarter, pyhost.Host) when
// scraped: nothing is counted on the task path for it.
//
// The metric names and what they mean are listed in docs/dashboard.md.
package metrics
