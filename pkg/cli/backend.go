package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/backend"
	"github.com/skeinrun/skein/pkg/backend/local"
	"github.com/skeinrun/skein/pkg/backend/openwhisk"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// Environment of the coordinator's openwhisk backend. The API key is
// read from the environment (or a file) only, never from a flag, so that
// it does not show in ps.
const (
	EnvOWAPIHost    = "SKEIN_OW_APIHOST"
	EnvOWAPIKey     = "SKEIN_OW_API_KEY"      // "uuid:key"
	EnvOWAPIKeyFile = "SKEIN_OW_API_KEY_FILE" // a file holding it, re-read after every 401
	EnvOWBusURL     = "SKEIN_OW_BUS_URL"      // the bus as the actions reach it (default: the coordinator's)
)

// backendFlags are the coordinator's --backend flags.
type backendFlags struct {
	kind    string
	workers int
	ow      openwhisk.Config
	owIdle  time.Duration
	owExec  string // runtime binary of a native action
	owEnv   string // its exec.env ("-": none)
	// funcs are the local runtimes' function options.
	funcs funcFlags
	fo    funcOptions
}

func (f *backendFlags) register(fs *flag.FlagSet) {
	d := openwhisk.DefaultConfig()
	fs.StringVar(&f.kind, "backend", "workers", "compute backend: workers (runtimes started elsewhere pull from the bus), local (runtimes in this process) or openwhisk")
	fs.IntVar(&f.workers, "workers", 0, "local backend: task slots in this process (default: one per core)")
	fs.StringVar(&f.ow.APIHost, "ow-apihost", "", "openwhisk: controller URL (env "+EnvOWAPIHost+"); the key comes from env "+EnvOWAPIKey+" or "+EnvOWAPIKeyFile)
	fs.StringVar(&f.ow.Namespace, "ow-namespace", d.Namespace, "openwhisk: namespace of the action")
	fs.StringVar(&f.ow.Action, "ow-action", d.Action, "openwhisk: action name (name or package/name)")
	fs.StringVar(&f.ow.Kind, "ow-kind", d.Kind, "openwhisk: action kind: blackbox (a docker action running --ow-image) or a native Go kind such as go:1.24 (running the --ow-exec binary)")
	fs.StringVar(&f.ow.Image, "ow-image", "", "openwhisk: runtime image of the docker action (its entrypoint runs \"runtime action\")")
	fs.StringVar(&f.owExec, "ow-exec", "", "openwhisk: the runtime binary (linux) deployed as the exec of a native Go action (--ow-kind go:1.x)")
	fs.StringVar(&f.owEnv, "ow-exec-env", "", "openwhisk: the native action's exec.env, which the action-golang image checks against its OW_EXECUTION_ENV (default openwhisk/action-golang-v1.N for go:1.N; - for none)")
	fs.IntVar(&f.ow.MemoryMB, "ow-memory", d.MemoryMB, "openwhisk: action memory in MiB (a job's runtime_memory may ask for more)")
	fs.Int64Var(&f.ow.TimeoutMS, "ow-timeout-ms", d.TimeoutMS, "openwhisk: action timeout in milliseconds")
	fs.IntVar(&f.ow.Batch, "ow-batch", d.Batch, "openwhisk: tasks one activation drains at most")
	fs.DurationVar(&f.owIdle, "ow-idle", time.Duration(d.IdleMS)*time.Millisecond, "openwhisk: an activation returns after the queue was empty this long")
	fs.IntVar(&f.ow.PoolThreads, "ow-pool-threads", d.PoolThreads, "openwhisk: concurrent invocations when a job does not set invoke_pool_threads")
	fs.Float64Var(&f.ow.RateLimit, "ow-rate", 0, "openwhisk: invocations per second at most (0: adapt to the controller's 429s)")
	fs.IntVar(&f.ow.MaxAttempts, "ow-max-attempts", d.MaxAttempts, "openwhisk: tries of one request on 429, 5xx or network errors before the job fails")
}

// openBackend builds the compute backend the flags name. connect opens a
// new connection to the coordinator's bus (for local workers); busURL is
// the coordinator's bus URL (the actions' default).
// configureRuntime, when set, completes the config of the runtimes the
// local backend runs (the runtime program's hooks: storage for shipped
// modules and large values).
func (f *backendFlags) openBackend(ctx context.Context, env Env, pool, busURL string, connect func(context.Context) (bus.Bus, error), log *slog.Logger, configureRuntime func(context.Context, *runtime.Config) error) (backend.Backend, error) {
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	switch f.kind {
	case "workers":
		return backend.NewWorkers(), nil
	case "local":
		if f.workers < 0 {
			return nil, usagef("--workers %d: want >= 0", f.workers)
		}
		b, err := connect(ctx)
		if err != nil {
			return nil, err
		}
		hosts, err := openHosts(f.fo, getenv, log)
		if err != nil {
			_ = b.Close()
			return nil, err
		}
		closeHosts := hosts.Close
		cfg := runtime.DefaultConfig()
		cfg.Pool, cfg.Slots, cfg.Logger = pool, f.workers, log
		hosts.configure(&cfg)
		if configureRuntime != nil {
			if err := configureRuntime(ctx, &cfg); err != nil {
				closeHosts()
				_ = b.Close()
				return nil, err
			}
		}
		if cfg.Slots == 0 {
			cfg.Slots = defaultWorkers()
		}
		l, err := local.Start(b, cfg)
		if err != nil {
			closeHosts()
			_ = b.Close()
			return nil, usagef("%v", err)
		}
		return &closeBoth{Backend: l, bus: b, hosts: closeHosts}, nil
	case "openwhisk":
		cfg := f.ow
		def := openwhisk.DefaultConfig()
		cfg.Concurrency, cfg.RetryBase, cfg.RetryMax = def.Concurrency, def.RetryBase, def.RetryMax
		if err := f.nativeCode(&cfg); err != nil {
			return nil, err
		}
		cfg.IdleMS = f.owIdle.Milliseconds()
		cfg.Logger = log
		if cfg.APIHost == "" {
			cfg.APIHost = getenv(EnvOWAPIHost)
		}
		creds, err := owCredentials(getenv)
		if err != nil {
			return nil, usagef("%v", err)
		}
		cfg.Credentials = creds
		actionBus := getenv(EnvOWBusURL)
		if actionBus == "" {
			actionBus = busURL
		}
		cfg.Env = map[string]string{EnvActionBus: actionBus}
		if err := cfg.Validate(); err != nil {
			return nil, usagef("--backend openwhisk: %v", err)
		}
		b, err := openwhisk.New(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, usagef("--backend %q: want workers, local or openwhisk", f.kind)
}

// nativeCode zips --ow-exec into cfg.Code for a native kind.
func (f *backendFlags) nativeCode(cfg *openwhisk.Config) error {
	switch {
	case cfg.Kind == "blackbox" && f.owExec != "":
		return usagef("--ow-exec %s: a blackbox action runs --ow-image; pick a native kind (--ow-kind go:1.24) for --ow-exec", f.owExec)
	case cfg.Kind == "blackbox":
		return nil
	case f.owExec == "":
		return usagef("--ow-kind %s: a native action needs the runtime binary: --ow-exec PATH", cfg.Kind)
	}
	bin, err := os.ReadFile(f.owExec)
	if err != nil {
		return usagef("--ow-exec: %v", err)
	}
	execEnv := openwhisk.ExecEnvForKind(cfg.Kind)
	switch f.owEnv {
	case "":
	case "-":
		execEnv = ""
	default:
		execEnv = f.owEnv
	}
	if cfg.Code, err = openwhisk.NativeCode(bin, execEnv); err != nil {
		return usagef("--ow-exec %s: %v", f.owExec, err)
	}
	return nil
}

// owCredentials reads the API key from SKEIN_OW_API_KEY, or from the file
// SKEIN_OW_API_KEY_FILE names, read again whenever the backend asks
// (after a 401), so that a rotated key (a re-mounted Kubernetes Secret)
// is picked up without a restart.
func owCredentials(getenv func(string) string) (openwhisk.CredentialsFunc, error) {
	key, file := getenv(EnvOWAPIKey), getenv(EnvOWAPIKeyFile)
	switch {
	case key != "" && file != "":
		return nil, fmt.Errorf("set %s or %s, not both", EnvOWAPIKey, EnvOWAPIKeyFile)
	case key != "":
		return openwhisk.StaticCredentials(openwhisk.Credentials{APIKey: key}), nil
	case file != "":
		return func(context.Context) (openwhisk.Credentials, error) {
			raw, err := os.ReadFile(file)
			if err != nil {
				return openwhisk.Credentials{}, fmt.Errorf("reading the API key: %w", err)
			}
			return openwhisk.Credentials{APIKey: strings.TrimSpace(string(raw))}, nil
		}, nil
	}
	return nil, fmt.Errorf("--backend openwhisk needs the API key in %s or %s", EnvOWAPIKey, EnvOWAPIKeyFile)
}

// closeBoth closes the local backend, then its function hosts and its
// bus connection.
type closeBoth struct {
	backend.Backend
	bus   bus.Bus
	hosts func()
}

func (c *closeBoth) Close() error {
	err := c.Backend.Close()
	c.hosts()
	return errors.Join(err, c.bus.Close())
}

// dispatchHook is the coordinator's Published (queue "tasks") or
// PublishedReduce (queue "reduce") hook that calls be: the job's pool,
// its tasks just published, and its invoke_pool_threads, runtime memory
// and task timeout.
func dispatchHook(be backend.Backend, queue string, log *slog.Logger) func(ctx context.Context, spec *wire.JobSpec, tasks int) error {
	return func(ctx context.Context, spec *wire.JobSpec, tasks int) error {
		job := backend.Job{
			ID: spec.ID, Pool: spec.Pool, Tasks: tasks, PoolThreads: spec.InvokePoolThreads,
			MemoryMB:  max(spec.RuntimeMemory, spec.MapRuntimeMemory, spec.ReduceRuntimeMemory),
			TimeoutMS: spec.TaskTimeoutMS, Queue: queue,
		}
		start := time.Now()
		if err := be.Dispatch(ctx, job); err != nil {
			log.Error("compute backend dispatch failed", "job", spec.ID, "tasks", tasks, "queue", queue, "err", err)
			return err
		}
		log.Debug("compute backend dispatched", "job", spec.ID, "tasks", tasks, "queue", queue, "took", time.Since(start))
		return nil
	}
}

// useBackend sets cfg's Published and PublishedReduce hooks to dispatch
// on be, keeping hooks set before.
func useBackend(cfg *coordinator.Config, be backend.Backend, log *slog.Logger) {
	chain := func(prev, h func(context.Context, *wire.JobSpec, int) error) func(context.Context, *wire.JobSpec, int) error {
		if prev == nil {
			return h
		}
		return func(ctx context.Context, spec *wire.JobSpec, tasks int) error {
			if err := prev(ctx, spec, tasks); err != nil {
				return err
			}
			return h(ctx, spec, tasks)
		}
	}
	reducePrev := cfg.Hooks.PublishedReduce
	if reducePrev == nil {
		// A Published hook set before saw reducers too: keep it so.
		reducePrev = cfg.Hooks.Published
	}
	cfg.Hooks.Published = chain(cfg.Hooks.Published, dispatchHook(be, "tasks", log))
	cfg.Hooks.PublishedReduce = chain(reducePrev, dispatchHook(be, "reduce", log))
}

func defaultWorkers() int { return goruntime.NumCPU() }
