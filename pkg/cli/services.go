package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	goruntime "runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/gcfloor"
	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
)

// ServiceHooks let other packages configure the long-running services.
type ServiceHooks struct {
	Coordinator func(ctx context.Context, cfg *coordinator.Config) error
	Runtime     func(ctx context.Context, cfg *runtime.Config) error
}

func serviceContext(ctx context.Context, env Env) (context.Context, context.CancelFunc) {
	if env.Signals {
		return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	}
	return context.WithCancel(ctx)
}

func serviceReport(name string, err error, env Env) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "%s: %s\n", name, ue.msg)
		return ExitUsage
	case errors.Is(err, dial.ErrBadURL), errors.Is(err, natsbus.ErrBadURL), errors.Is(err, dial.ErrBadCredentials):
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return ExitUsage
	case errors.Is(err, bus.ErrUnreachable):
		fmt.Fprintf(env.Stderr, "%s: cannot reach the bus: %v\n", name, err)
		return ExitUnreachable
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
	return ExitInternal
}

// Coordinator runs the coordinator service until SIGINT/SIGTERM.
func Coordinator(ctx context.Context, args []string, env Env, hooks ServiceHooks) int {
	return serviceReport("coordinator", coordinatorMain(ctx, args, env, hooks), env)
}

func coordinatorMain(ctx context.Context, args []string, env Env, hooks ServiceHooks) error {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var (
		busURL, listen, dir, pool string
		configPath                string
		lf                        LogFlags
		retention, recoverWindow  time.Duration
		stallAfter, lease         time.Duration
		jobBacklog                int
		bf                        backendFlags
		otel                      otelFlags
		auth                      BusAuth
		signKey                   keyFlag
		hf                        httpFlags
		wh                        webhookFlags
	)
	bf.register(fs)
	wh.register(fs)
	hf.register(fs, "the dashboard,")
	hf.registerDashboard(fs)
	bf.funcs.register(fs, "coordinator", DefaultHosts, true)
	auth.register(fs)
	fs.StringVar(&busURL, "bus", "", "bus URL, or the URLs of a cluster's nodes comma-separated (env SKEIN_BUS)")
	fs.StringVar(&listen, "embedded-listen", "", "run an embedded NATS server listening on this host:port and use it (for a one-machine install)")
	fs.StringVar(&dir, "embedded-dir", "", "JetStream directory of the embedded server (default: a temporary one)")
	fs.StringVar(&pool, "pool", "", "default worker pool (default \"default\")")
	fs.StringVar(&configPath, "config", "", "config file (env SKEIN_CONFIG)")
	fs.DurationVar(&retention, "retention", 15*time.Minute, "how long finished jobs' results stay available")
	fs.DurationVar(&recoverWindow, "recover-window", 24*time.Hour, "on start, read the job log this far back: unfinished jobs submitted since then whose coordinator is gone are taken up (0: none from before the start)")
	fs.DurationVar(&lease, "lease", coordinator.DefaultLease, "how long a coordinator that stopped being heard keeps its jobs before another coordinator of the namespace takes them over (200ms to 10m)")
	fs.IntVar(&jobBacklog, "job-backlog", coordinator.DefaultJobBacklog, "how many of a job's tasks may be queued or running, not done, at once: publishing the rest waits, so that jobs submitted later are not queued behind all of a large job's tasks; within it each job's bound follows its pace (-1: no bound)")
	fs.DurationVar(&stallAfter, "stall-after", time.Minute, "ask the compute backend for runtimes again when a job has seen no event for this long (negative: never)")
	fs.StringVar(&lf.Level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&lf.Format, "log-format", "text", "text or json")
	signKey.registerSign(fs)
	otel.register(fs)
	log, fc, err := parseService(fs, args, &lf, &configPath, env)
	if err != nil {
		return err
	}
	stopGC, err := startGCFloor(env)
	if err != nil {
		return err
	}
	defer stopGC()
	if listen == "" {
		fc.apply(&busURL, &pool, env.Getenv)
	}
	if bf.fo, err = bf.funcs.resolve(fc, env.Getenv, DefaultHosts); err != nil {
		return err
	}
	if jobBacklog == 0 || jobBacklog < -1 {
		return usagef("--job-backlog %d: want a positive number of tasks, or -1 for no bound", jobBacklog)
	}
	if recoverWindow < 0 {
		return usagef("--recover-window %v: must not be negative", recoverWindow)
	}
	if err := hf.resolve(env.Getenv); err != nil {
		return err
	}
	hook, err := wh.resolve(fc, env.Getenv)
	if err != nil {
		return err
	}
	ctx, stop := serviceContext(ctx, env)
	defer stop()
	tel, stopTel, err := otel.setup(ctx, env, "skein-coordinator")
	if err != nil {
		return err
	}
	defer stopTel()
	triggers, err := configTriggers(fc)
	if err != nil {
		return err
	}
	var creds dial.Credentials // the bus credentials, for trigger sources
	var b bus.Bus
	var connect func(context.Context) (bus.Bus, error) // another connection, for local workers
	var beats func(context.Context) (bus.Bus, error)   // the heartbeats' own connection
	switch {
	case listen != "" && busURL != "":
		return usagef("give --bus or --embedded-listen, not both")
	case listen != "":
		srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{Listen: listen, Dir: dir})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		log.Info("embedded NATS server listening", "url", srv.ClientURL())
		busURL = srv.ClientURL()
		connect = func(ctx context.Context) (bus.Bus, error) {
			return srv.Connect(ctx, natsbus.Options{Name: "skein-runtime", Logger: log})
		}
		beats = func(ctx context.Context) (bus.Bus, error) {
			return srv.Connect(ctx, natsbus.Options{Name: "skein-coordinator-lease", Logger: log})
		}
		nb, err := srv.Connect(ctx, natsbus.Options{Name: "skein-coordinator", Logger: log})
		if err != nil {
			return err
		}
		b = nb
	case busURL != "":
		do, err := auth.dialOptions("skein-coordinator", dial.RoleCoordinator, log, env.Getenv, 0)
		if err != nil {
			return err
		}
		if b, err = dial.Open(ctx, busURL, do); err != nil {
			return err
		}
		creds = do.Credentials
		// Local workers use the coordinator's credentials (and inbox).
		ro := do
		ro.Name = "skein-runtime"
		connect = func(ctx context.Context) (bus.Bus, error) {
			return dial.Open(ctx, busURL, ro)
		}
		bo := do
		bo.Name = "skein-coordinator-lease"
		beats = func(ctx context.Context) (bus.Bus, error) {
			return dial.Open(ctx, busURL, bo)
		}
	default:
		return usagef("--bus (or SKEIN_BUS) or --embedded-listen is required")
	}
	defer b.Close()
	cfg := coordinator.Config{Pool: pool, Retention: retention, StallAfter: stallAfter, JobBacklog: jobBacklog, Lease: lease, Logger: log, Telemetry: tel}
	if s, err := signKey.signer(env.Getenv); err != nil {
		return err
	} else if s != nil {
		cfg.Signer = s
	}
	cfg.Hooks.Poll = newPollStorage(log).watch
	if hooks.Coordinator != nil {
		if err := hooks.Coordinator(ctx, &cfg); err != nil {
			return err
		}
	}
	be, err := bf.openBackend(ctx, env, pool, busURL, connect, log, hooks.Runtime)
	if err != nil {
		return err
	}
	defer be.Close()
	useBackend(&cfg, be, log)
	// The heartbeats that hold the coordinator's lease get a connection
	// of their own: on the main one they would wait behind the events of
	// every running job.
	hb, err := beats(ctx)
	if err != nil {
		return err
	}
	defer hb.Close()
	cfg.Heartbeats = hb
	met := hf.wireCoordinator(&cfg)
	c, err := coordinator.New(b, cfg)
	if err != nil {
		return usagef("%v", err)
	}
	defer c.Close()
	var serving atomic.Bool
	if met != nil {
		srv, err := hf.serveCoordinator(c, b, met, &serving, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	// The coordinator joins its namespace (heartbeats, the job log's
	// owners) whatever the window, so that other coordinators never
	// take its jobs for a dead one's.
	// Running jobs must be taken up before the API answers for them:
	// retry reading the job log for a minute (a broker that has just
	// created its streams may refuse the first replay), then give up
	// and exit, so that a supervisor restarts the coordinator rather
	// than have it serve without the jobs it should hold.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	taken, err := retry.Value(rctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second, OnRetry: func(attempt int, err error, _ time.Duration) {
		log.Warn("reading the job log to take up unfinished jobs", "attempt", attempt, "err", err)
	}}, func() ([]string, error) { return c.Recover(rctx, recoverWindow) })
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: the job log cannot be read, so unfinished jobs cannot be taken up: %v", bus.ErrUnreachable, err)
	}
	if len(taken) > 0 {
		log.Info("took up unfinished jobs", "jobs", len(taken))
	}
	if err := c.Serve(ctx); err != nil {
		return err
	}
	tr, err := startTriggers(ctx, c, b, busURL, creds, triggers, log)
	if err != nil {
		return err
	}
	if tr != nil {
		defer tr.Close()
		if hook != nil {
			if _, err := tr.ServeWebhook(*hook); err != nil {
				return err
			}
		}
	} else if hook != nil {
		log.Error("the webhook does not listen: triggers are off")
	}
	serving.Store(true)
	log.Info("coordinator serving", "bus", dial.Redact(busURL), "pool", pool, "backend", bf.kind, "id", c.ID())
	<-ctx.Done()
	log.Info("coordinator stopping")
	return nil
}

// Runtime runs a runtime worker until SIGINT/SIGTERM (or its task/idle
// limits).
func Runtime(ctx context.Context, args []string, env Env, hooks ServiceHooks) int {
	return serviceReport("runtime", runtimeMain(ctx, args, env, hooks), env)
}

func runtimeMain(ctx context.Context, args []string, env Env, hooks ServiceHooks) error {
	fs := flag.NewFlagSet("runtime", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfg := runtime.DefaultConfig()
	var (
		busURL, configPath string
		lf                 LogFlags
		otel               otelFlags
		ff                 funcFlags
		auth               BusAuth
		verifyKey          keyFlag
		hf                 httpFlags
	)
	fs.StringVar(&busURL, "bus", "", "bus URL, or the URLs of a cluster's nodes comma-separated (env SKEIN_BUS)")
	auth.register(fs)
	verifyKey.registerVerify(fs)
	hf.register(fs, "the runtime's")
	fs.StringVar(&cfg.Pool, "pool", "", "worker pool (queue) to pull tasks from (default \"default\")")
	ff.register(fs, "runtime", DefaultHosts, true)
	fs.StringVar(&configPath, "config", "", "config file (env SKEIN_CONFIG)")
	fs.IntVar(&cfg.Slots, "slots", goruntime.NumCPU(), "tasks run at once")
	fs.IntVar(&cfg.Prefetch, "prefetch", 0, "tasks held ahead of the slots, fixed (default: adapts to the tasks' durations and the broker's round trips)")
	fs.DurationVar(&cfg.Lease, "lease", 30*time.Second, "redelivery lease of a task; renewed while it runs")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", 5, "deliveries of one task before it is reported lost")
	fs.IntVar(&cfg.MaxTasks, "max-tasks", 0, "exit after this many tasks (0: never)")
	fs.DurationVar(&cfg.Idle, "idle", 0, "exit after this long without a task (0: never)")
	fs.StringVar(&cfg.WorkerID, "worker-id", "", "name in events (default host-pid)")
	fs.StringVar(&lf.Level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&lf.Format, "log-format", "text", "text or json")
	otel.register(fs)
	log, fc, err := parseService(fs, args, &lf, &configPath, env)
	if err != nil {
		return err
	}
	fc.apply(&busURL, &cfg.Pool, env.Getenv)
	if busURL == "" {
		return usagef("--bus (or SKEIN_BUS, or bus: in the config file) is required")
	}
	stopGC, err := startGCFloor(env)
	if err != nil {
		return err
	}
	defer stopGC()
	fo, err := ff.resolve(fc, env.Getenv, DefaultHosts)
	if err != nil {
		return err
	}
	if err := hf.resolve(env.Getenv); err != nil {
		return err
	}
	cfg.Logger = log
	if v, err := verifyKey.verifier(env.Getenv); err != nil {
		return err
	} else if v != nil {
		cfg.Verifier = v
	}
	ctx, stop := serviceContext(ctx, env)
	defer stop()
	tel, stopTel, err := otel.setup(ctx, env, "skein-runtime")
	if err != nil {
		return err
	}
	defer stopTel()
	cfg.Telemetry, cfg.PollStatus = tel, newPollStorage(log).writeStatus
	do, err := auth.dialOptions("skein-runtime", dial.RoleRuntime, log, env.Getenv, 0)
	if err != nil {
		return err
	}
	b, err := dial.Open(ctx, busURL, do)
	if err != nil {
		return err
	}
	defer b.Close()
	hosts, err := openHosts(fo, env.Getenv, log)
	if err != nil {
		return err
	}
	defer hosts.Close()
	hosts.configure(&cfg)
	if hooks.Runtime != nil {
		if err := hooks.Runtime(ctx, &cfg); err != nil {
			return err
		}
	}
	rt, err := runtime.New(b, cfg)
	if err != nil {
		return usagef("%v", err)
	}
	if hf.addr != "" {
		hs := make(map[string]any, len(cfg.Hosts))
		for k, h := range cfg.Hosts {
			hs[k] = h
		}
		srv, err := hf.serveRuntime(rt, b, hs, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	_, err = rt.Run(ctx)
	return err
}

// startGCFloor keeps a service's collector from running often while its
// live heap is small (internal/gcfloor: SKEIN_GC_FLOOR, default 64 MiB;
// GOGC set turns it off).
func startGCFloor(env Env) (stop func(), err error) {
	stop, err = gcfloor.Start(env.Getenv)
	if err != nil {
		return stop, usagef("%v", err)
	}
	return stop, nil
}

// parseService parses a service's flags (no positional arguments), builds
// its logger and reads its config file.
func parseService(fs *flag.FlagSet, args []string, lf *LogFlags, configPath *string, env Env) (*slog.Logger, *fileConfig, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	log, err := lf.Logger(env.Stderr)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	fc, err := loadConfig(*configPath, env.Getenv)
	if err != nil {
		return nil, nil, err
	}
	return log, fc, nil
}
