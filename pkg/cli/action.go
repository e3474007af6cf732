package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/pkg/action"
	"github.com/skeinrun/skein/pkg/backend/openwhisk"
	"github.com/skeinrun/skein/pkg/runtime"
)

// Environment of an action container. SKEIN_BUS_URL is deployed as an
// init parameter of the action (the controller hands it over at /init);
// SKEIN_BUS is read when it is not set.
const (
	EnvActionBus = "SKEIN_BUS_URL"
	// DefaultActionIdle is how long an activation waits on an empty queue
	// when the invocation does not say (idle_ms).
	DefaultActionIdle = 2 * time.Second
	// minActionIdle bounds idle_ms from below.
	minActionIdle = 100 * time.Millisecond
)

// RuntimeAction runs the runtime in OpenWhisk action mode: an action
// proxy (package action) on __OW_ACTION_PORT or 8080 whose every /run
// drains up to max_tasks tasks of the invocation's pool from the bus and
// returns {"job","pool","tasks","worker"}. Tasks' outcomes, failures
// included, travel as events on the bus; /run fails (502) only when the
// activation could not run at all (bad params, no bus).
func RuntimeAction(ctx context.Context, args []string, env Env, hooks ServiceHooks) int {
	return serviceReport("runtime action", runtimeActionMain(ctx, args, env, hooks, false), env)
}

// RuntimeActionLoop runs the runtime as the exec of a native Go action:
// the actionloop protocol of apache/openwhisk-runtime-go's proxy (package
// action, Loop) on stdin and descriptor 3, one activation per line, each
// run as by RuntimeAction. cmd/runtime chooses it by itself when the
// proxy started it (action.StartedByProxy). Settings come from the
// environment, which the proxy builds from the /init env (the action's
// init parameters): SKEIN_BUS_URL, SKEIN_SLOTS, SKEIN_LEASE,
// SKEIN_MAX_ATTEMPTS, SKEIN_LOG_LEVEL, SKEIN_HOSTS, ...
func RuntimeActionLoop(ctx context.Context, args []string, env Env, hooks ServiceHooks) int {
	return serviceReport("runtime actionloop", runtimeActionMain(ctx, args, env, hooks, true), env)
}

// actionEnvFlags are the flags of the action modes that the environment
// sets when no flag does: an action's only settings are its init
// parameters, which reach the process as environment variables.
var actionEnvFlags = [][2]string{
	{"SKEIN_SLOTS", "slots"},
	{"SKEIN_LEASE", "lease"},
	{"SKEIN_MAX_ATTEMPTS", "max-attempts"},
	{"SKEIN_LOG_LEVEL", "log-level"},
	{"SKEIN_LOG_FORMAT", "log-format"},
}

func runtimeActionMain(ctx context.Context, args []string, env Env, hooks ServiceHooks, loop bool) error {
	name := "runtime action"
	if loop {
		name = "runtime actionloop"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	base := runtime.DefaultConfig()
	var (
		listen    string
		lf        LogFlags
		ff        funcFlags
		verifyKey keyFlag
	)
	ff.register(fs, "runtime action", DefaultHosts, true)
	verifyKey.registerVerify(fs)
	if !loop {
		fs.StringVar(&listen, "listen", "", "address of the action proxy (default :8080, or :$__OW_ACTION_PORT)")
	}
	fs.IntVar(&base.Slots, "slots", 1, "tasks one activation runs at once (env SKEIN_SLOTS; an invocation's \"slots\" param overrides it)")
	fs.DurationVar(&base.Lease, "lease", 30*time.Second, "redelivery lease of a task; must match the pool's other runtimes (env SKEIN_LEASE)")
	fs.IntVar(&base.MaxAttempts, "max-attempts", 5, "deliveries of one task before it is reported lost (env SKEIN_MAX_ATTEMPTS)")
	fs.StringVar(&lf.Level, "log-level", "info", "debug, info, warn or error (env SKEIN_LOG_LEVEL)")
	fs.StringVar(&lf.Format, "log-format", "text", "text or json (env SKEIN_LOG_FORMAT)")
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, ef := range actionEnvFlags {
		if v := getenv(ef[0]); v != "" {
			if err := fs.Set(ef[1], v); err != nil {
				return usagef("%s=%q: %v", ef[0], v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	log, err := lf.Logger(env.Stderr)
	if err != nil {
		return usagef("%v", err)
	}
	if listen == "" {
		listen = action.Addr()
	}
	if err := base.Validate(); err != nil {
		return usagef("%v", err)
	}
	if v, err := verifyKey.verifier(getenv); err != nil {
		return err
	} else if v != nil {
		base.Verifier = v
	}
	fo, err := ff.resolve(nil, getenv, DefaultHosts)
	if err != nil {
		return err
	}
	hosts, err := openHosts(fo, getenv, log)
	if err != nil {
		return err
	}
	defer hosts.Close()
	hosts.configure(&base)
	ex := &actionExec{base: base, hook: hooks.Runtime, log: log, getenv: getenv}
	defer ex.close()
	ctx, stop := serviceContext(ctx, env)
	defer stop()
	if !loop {
		return action.Serve(ctx, listen, ex.run, log)
	}
	out, err := action.LoopOutput()
	if err != nil {
		return err
	}
	defer out.Close()
	in := env.Stdin
	if in == nil {
		in = os.Stdin
	}
	return action.Loop(ctx, in, out, ex.run, action.LoopConfig{Logger: log, Getenv: getenv})
}

// actionExec runs activations. The bus connection is opened by the first
// activation (the URL arrives with /init) and kept while the container is
// warm.
type actionExec struct {
	base   runtime.Config
	hook   func(ctx context.Context, cfg *runtime.Config) error
	log    *slog.Logger
	getenv func(string) string

	mu  sync.Mutex
	bus bus.Bus
	url string
}

func (e *actionExec) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.bus != nil {
		_ = e.bus.Close()
		e.bus = nil
	}
}

// open returns the bus named by the environment, connecting on first use
// (or when the URL changed).
func (e *actionExec) open(ctx context.Context) (bus.Bus, error) {
	url := e.getenv(EnvActionBus)
	if url == "" {
		url = e.getenv("SKEIN_BUS")
	}
	if url == "" {
		return nil, errors.New(EnvActionBus + " is not set: deploy the bus URL as an init parameter of the action")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.bus != nil && e.url == url {
		return e.bus, nil
	}
	if e.bus != nil {
		_ = e.bus.Close()
		e.bus = nil
	}
	do, err := BusAuth{}.dialOptions("skein-runtime-action", dial.RoleRuntime, e.log, e.getenv, 0)
	if err != nil {
		return nil, err
	}
	b, err := dial.Open(ctx, url, do)
	if err != nil {
		return nil, fmt.Errorf("opening the bus %s: %w", dial.Redact(url), err)
	}
	e.bus, e.url = b, url
	return b, nil
}

// actionParams are an invocation's params (see backend/openwhisk).
type actionParams struct {
	job      string
	pool     string
	maxTasks int
	idle     time.Duration
	slots    int
	queues   runtime.Queues
}

// parseActionParams checks the params the runtime reads and names every
// bad one; other keys (the action's own default params) are ignored.
func parseActionParams(p map[string]any, slots int) (actionParams, error) {
	ap := actionParams{pool: "default", maxTasks: 1, idle: DefaultActionIdle, slots: slots}
	var errs []error
	str := func(key string, dst *string) {
		v, ok := p[key]
		if !ok || v == nil {
			return
		}
		s, ok := v.(string)
		if !ok || s == "" || !validName(s) {
			errs = append(errs, fmt.Errorf("%s %v: want a name of letters, digits, - and _", key, v))
			return
		}
		*dst = s
	}
	num := func(key string, min float64) (float64, bool) {
		v, ok := p[key]
		if !ok || v == nil {
			return 0, false
		}
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || f < min || f > 1e9 {
			errs = append(errs, fmt.Errorf("%s %v: want a whole number from %v to 1e9", key, v, min))
			return 0, false
		}
		return f, true
	}
	str(openwhisk.ParamJob, &ap.job)
	str(openwhisk.ParamPool, &ap.pool)
	if f, ok := num(openwhisk.ParamMaxTasks, 1); ok {
		ap.maxTasks = int(f)
	}
	if f, ok := num(openwhisk.ParamIdleMS, 0); ok {
		ap.idle = max(time.Duration(f)*time.Millisecond, minActionIdle)
	}
	if f, ok := num("slots", 1); ok {
		ap.slots = int(f)
	}
	if v, ok := p[openwhisk.ParamQueue]; ok && v != nil {
		switch q, _ := v.(string); runtime.Queues(q) {
		case runtime.QueuesTasks, runtime.QueuesReduce:
			ap.queues = runtime.Queues(q)
		default:
			errs = append(errs, fmt.Errorf("%s %v: want %q or %q", openwhisk.ParamQueue, v, runtime.QueuesTasks, runtime.QueuesReduce))
		}
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return ap, errors.New("bad params: " + strings.Join(msgs, "; "))
	}
	return ap, nil
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return len(s) <= 128
}

// run is one activation: drain up to max_tasks tasks of the pool, stop
// earlier when the queue stays empty for idle_ms or the activation's
// deadline nears (tasks still running then are left for redelivery).
func (e *actionExec) run(ctx context.Context, params map[string]any) (map[string]any, error) {
	ap, err := parseActionParams(params, e.base.Slots)
	if err != nil {
		return nil, err
	}
	act, _ := action.FromContext(ctx)
	if d, ok := ctx.Deadline(); ok {
		// Stop pulling before the invoker kills the container, so that
		// running tasks are left unacked rather than lost with it.
		margin := min(5*time.Second, time.Until(d)/10)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-margin))
		defer cancel()
	}
	b, err := e.open(ctx)
	if err != nil {
		return nil, err
	}
	cfg := e.base
	cfg.Pool, cfg.MaxTasks, cfg.Idle, cfg.Slots, cfg.Queues = ap.pool, ap.maxTasks, ap.idle, ap.slots, ap.queues
	cfg.Prefetch = 0 // 2×slots, but never more than the activation may run
	if act.ActivationID != "" {
		cfg.WorkerID = "ow-" + act.ActivationID
	}
	cfg.Logger = e.log.With("activation", act.ActivationID)
	if e.hook != nil {
		if err := e.hook(ctx, &cfg); err != nil {
			return nil, err
		}
	}
	rt, err := runtime.New(b, cfg)
	if err != nil {
		return nil, fmt.Errorf("bad params: %w", err)
	}
	sum, err := rt.Run(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{"job": ap.job, "pool": ap.pool, "tasks": sum.Tasks, "worker": sum.Worker}, nil
}
