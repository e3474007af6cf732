// Package embedded runs a whole Skein installation in one process: an
// in-process NATS server with JetStream in a temporary directory, a
// coordinator, and local runtime workers. It is what `submit` uses when no
// bus is configured.
package embedded

import (
	"context"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
)

// Config configures an embedded installation.
type Config struct {
	// Workers is the number of runtime slots. Default: one per core.
	Workers int
	// Dir holds JetStream's files; empty: a temporary directory.
	Dir         string
	Coordinator coordinator.Config
	Runtime     runtime.Config
	Logger      *slog.Logger
}

// Cluster is a running embedded installation.
type Cluster struct {
	Server      *natsbus.Embedded
	Coordinator *coordinator.Coordinator
	Client      *client.Client

	coordBus, runBus *natsbus.Bus
	cancel           context.CancelFunc
	wg               sync.WaitGroup
	runErr           error
}

// Start brings everything up; Close tears it down.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = goruntime.NumCPU()
	}
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{Dir: cfg.Dir})
	if err != nil {
		return nil, err
	}
	c := &Cluster{Server: srv}
	fail := func(err error) (*Cluster, error) {
		c.Close()
		return nil, err
	}
	// Two connections: the coordinator's and the runtime's each get their
	// own read loop.
	// The events and the job log are files (in a temporary directory
	// unless Dir is set), so that a job's events do not stay in the
	// process's memory: a million-task job records about 300 MB of them.
	// The task queue is in memory: the coordinator's job backlog bounds
	// what it holds (DefaultJobBacklog tasks a job, about 2 MB), and
	// nothing outlives the process that runs the job, so files would only
	// cost every task a write and a deletion record (a quarter of a
	// 100,000-task job's time, docs/benchmarks.md). Without a backlog
	// bound the tasks stay on files. The connections are in-process, so
	// a publish's ack is not lost: a short window of message ids (kept
	// in memory) is enough to drop the copies of a publish retried after
	// a timeout.
	cc := cfg.Coordinator
	bo := natsbus.Options{Logger: cfg.Logger, DedupWindow: 2 * time.Second, MemoryTasks: cc.JobBacklog >= 0}
	bo.Name = "skein-coordinator"
	if c.coordBus, err = srv.Connect(ctx, bo); err != nil {
		return fail(fmt.Errorf("embedded: %w", err))
	}
	bo.Name = "skein-runtime"
	if c.runBus, err = srv.Connect(ctx, bo); err != nil {
		return fail(fmt.Errorf("embedded: %w", err))
	}
	if cc.Logger == nil {
		cc.Logger = cfg.Logger
	}
	if c.Coordinator, err = coordinator.New(c.coordBus, cc); err != nil {
		return fail(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if err := c.Coordinator.Serve(rctx); err != nil {
		return fail(err)
	}
	rc := cfg.Runtime
	rc.Slots = cfg.Workers
	// One process holds the queue and its only consumer: a lease cannot
	// hand a task to another runtime (if this one dies, so does the job),
	// so tasks may wait in a deep prefetch buffer without being
	// redelivered. The window is the adaptive one's deepest (1,024), or
	// 64 tasks a slot when that is more: a window of 130 cost a 100,000-
	// task map a fifth of its time in pull requests of 32 tasks.
	if rc.Lease == 0 {
		rc.Lease = time.Hour
	}
	if rc.Prefetch == 0 {
		rc.Prefetch = max(64*rc.Slots, 1024-rc.Slots)
	}
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	if rc.Pool == "" {
		rc.Pool = cc.Pool
	}
	rt, err := runtime.New(c.runBus, rc)
	if err != nil {
		return fail(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if _, err := rt.Run(rctx); err != nil && rctx.Err() == nil {
			c.runErr = err
			cfg.Logger.Error("embedded runtime stopped", "err", err)
		}
	}()
	c.Client = client.New(c.coordBus)
	return c, nil
}

// Close stops the workers, the coordinator and the server.
func (c *Cluster) Close() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	if c.Coordinator != nil {
		_ = c.Coordinator.Close()
	}
	if c.runBus != nil {
		_ = c.runBus.Close()
	}
	if c.coordBus != nil {
		_ = c.coordBus.Close()
	}
	if c.Server != nil {
		c.Server.Shutdown()
	}
}
