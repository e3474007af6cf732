package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// Exit codes of the submit command.
const (
	ExitOK          = 0
	ExitInternal    = 1
	ExitUsage       = 2 // bad flags or input
	ExitJobFailed   = 3 // a function failed after its retries
	ExitTimedOut    = 4
	ExitUnreachable = 5 // the bus or the coordinator cannot be reached
	ExitCancelled   = 6
)

// usageError is bad input from the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// Env is the process environment the commands see (tests replace it).
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Signals, when set, cancel a waiting job (SIGINT/SIGTERM).
	Signals bool
	// Extend lets other packages add to the embedded cluster and client
	// (storage, Python host) without this package importing them.
	Extend func(ctx context.Context, o *Options) error
	// Bus, when set, is an open connection that a job with a bus uses
	// instead of dialing one; it is not closed (submit serve, serve.go).
	Bus bus.Bus
	// Interrupt, when set, cancels a waiting job when it is closed, as a
	// signal does with Signals.
	Interrupt <-chan struct{}
	// Submitted, when set, is told a job's id once it is submitted.
	Submitted func(id string)
}

// Options is everything a submit invocation decided.
type Options struct {
	Spec wire.JobSpec
	Bus  string
	// BusAuth is the bus credentials and TLS (flags and environment).
	BusAuth BusAuth
	// VerifyKey is --verify-key: the coordinator's public key.
	VerifyKey keyFlag
	Config    string
	Workers   int
	NoWait    bool
	NoFetch   bool
	// Stream prints each task's result as a JSON line as it lands, then
	// the final status (--stream).
	Stream bool
	// Role is the bus role to connect with (default the submitter's;
	// `submit events` takes the watcher's inbox).
	Role string
	// ConfigureRuntime, when set, completes the config of any runtime this
	// process runs (storage hooks of reducer_wait_local reducers).
	ConfigureRuntime func(*runtime.Config)
	// StatusFile receives the job's final status as JSON (stats for
	// scripts and benchmarks).
	StatusFile string
	Quiet      bool
	Logging    LogFlags
	Embedded   *embedded.Config
	Client     *client.Client
	// Cleanup, when set, removes a job's stored artifacts; it is called
	// for --clean jobs once their result was fetched (or not wanted).
	Cleanup func(ctx context.Context, job string) error
	// Monitoring is progress, plot and telemetry (monitor.go).
	Monitoring MonitorOptions
	// CoordinatorGrace is --coordinator-grace, or SKEIN_COORDINATOR_GRACE
	// once resolved (client.CoordinatorGrace; 0: the client's default).
	CoordinatorGrace time.Duration
}

const submitUsage = `usage: submit <command> [flags]

Run functions on Skein and print the result as one line of JSON on stdout.

Commands:
  call       run one function:        submit call --function add --data '{"x":1,"y":3}'
  map        one task per element:    submit map --function add --iterdata '[1,2,3]' --extra-params '{"y":1}'
  mapreduce  map, then reduce:        submit mapreduce ... --reduce-function sum
  status JOB print a job's status (--watch follows it)
  wait JOB   wait for a job to end, print its status
  result JOB print a finished job's result
  cancel JOB cancel a job
  plot JOB   write a job's timeline plot as HTML (-o FILE, default JOB.html)
  events [JOB] follow job events (CloudEvents, one JSON line each): a job's
             from its start to its end, or every job's from now on
  trigger    create|list|delete the triggers that start jobs from events
             (bucket notifications, queue messages, other jobs' ends)

With no bus configured (--bus or SKEIN_BUS) everything runs inside this
process. Exit codes: 0 ok, 1 internal error, 2 bad input, 3 job failed,
4 timed out, 5 bus or coordinator unreachable, 6 cancelled.
Run 'submit <command> -h' for a command's flags.
`

// Submit runs the submit command line and returns its exit code.
func Submit(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.Stderr, submitUsage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "call", "map", "mapreduce":
		err = runJob(ctx, wire.JobKind(cmd), rest, env)
	case "status", "wait", "result", "cancel", "events":
		err = runJobCommand(ctx, cmd, rest, env)
	case "plot":
		err = runPlot(ctx, rest, env)
	case "trigger":
		err = runTrigger(ctx, rest, env)
	default:
		err = usagef("unknown command %q (want call, map, mapreduce, status, wait, result, cancel, plot, events or trigger)", cmd)
	}
	return report(err, env)
}

// report prints err on stderr and maps it to an exit code.
func report(err error, env Env) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ue *usageError
	var ie *client.InvalidError
	var je *client.JobError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "submit: %s\n(run 'submit <command> -h' for the flags)\n", ue.msg)
		return ExitUsage
	case errors.As(err, &ie), errors.Is(err, coordinator.ErrInvalid), errors.Is(err, dial.ErrBadURL), errors.Is(err, natsbus.ErrBadURL), errors.Is(err, dial.ErrBadCredentials):
		fmt.Fprintf(env.Stderr, "submit: %v\n", err)
		return ExitUsage
	case errors.Is(err, client.ErrUnknownJob):
		fmt.Fprintf(env.Stderr, "submit: %v\n", err)
		return ExitUsage
	case errors.Is(err, bus.ErrTooLarge):
		fmt.Fprintf(env.Stderr, "submit: the job does not fit in one bus message: %v\n"+
			"(raise the broker's message limit, split the job, or put large inputs in storage and pass their URLs as iterdata elements)\n", err)
		return ExitUsage
	case errors.As(err, &je):
		printJobError(env.Stderr, &je.Status)
		switch je.Status.State {
		case wire.StateTimedOut:
			return ExitTimedOut
		case wire.StateCancelled:
			return ExitCancelled
		}
		return ExitJobFailed
	case errors.Is(err, bus.ErrUnreachable), errors.Is(err, client.ErrNoCoordinator), errors.Is(err, bus.ErrNoResponders), errors.Is(err, client.ErrCoordinatorLost):
		fmt.Fprintf(env.Stderr, "submit: cannot reach the bus: %v\n", err)
		return ExitUnreachable
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(env.Stderr, "submit: timed out: %v\n", err)
		return ExitTimedOut
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(env.Stderr, "submit: interrupted\n")
		return ExitCancelled
	}
	fmt.Fprintf(env.Stderr, "submit: %v\n", err)
	return ExitInternal
}

func printJobError(w io.Writer, st *wire.JobStatus) {
	switch st.State {
	case wire.StateTimedOut:
		msg := "timed out"
		if st.Error != nil {
			msg = st.Error.Message
		}
		fmt.Fprintf(w, "submit: job %s timed out: %s\n", st.ID, msg)
		return
	case wire.StateCancelled:
		fmt.Fprintf(w, "submit: job %s was cancelled\n", st.ID)
		return
	}
	if st.Error == nil {
		fmt.Fprintf(w, "submit: job %s ended %s\n", st.ID, st.State)
		return
	}
	e := st.Error
	if st.FailedTask < 0 {
		fmt.Fprintf(w, "submit: job %s failed: %s\n", st.ID, e.Error())
		return
	}
	fmt.Fprintf(w, "submit: job %s failed: task %d: %s\n", st.ID, st.FailedTask, e.Error())
	if e.Stack != "" {
		fmt.Fprintf(w, "remote traceback of task %d:\n%s\n", st.FailedTask, strings.TrimRight(e.Stack, "\n"))
	}
}

// stringList is a repeatable flag; each use may hold comma-separated
// values.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

type envList map[string]string

func (e envList) String() string { return "" }
func (e envList) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	e[k] = val
	return nil
}

// seconds is a duration flag given in seconds (fractions allowed).
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return "0"
	}
	return strconv.FormatFloat(s.d.Seconds(), 'g', -1, 64)
}
func (s seconds) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("want a number of seconds, got %q", v)
	}
	if f < 0 {
		return fmt.Errorf("must not be negative, got %s", v)
	}
	*s.d = time.Duration(f * float64(time.Second))
	return nil
}

// openBus connects submit to the bus of o.Bus with the submitter role
// (o.Role when set).
func (o *Options) openBus(ctx context.Context, env Env, log *slog.Logger) (bus.Bus, error) {
	role := dial.RoleSubmitter
	if o.Role != "" {
		role = o.Role
	}
	do, err := o.BusAuth.dialOptions("skein-submit", role, log, env.Getenv, 3*time.Second)
	if err != nil {
		return nil, err
	}
	return dial.Open(ctx, o.Bus, do)
}

// commonFlags are accepted by every command.
func commonFlags(fs *flag.FlagSet, o *Options) {
	fs.StringVar(&o.Bus, "bus", "", "bus URL: nats://host:4222 or amqp://user@host:5672/ (env SKEIN_BUS; none: run embedded)")
	fs.StringVar(&o.Config, "config", "", "config file (env SKEIN_CONFIG)")
	o.BusAuth.register(fs)
	o.VerifyKey.registerVerify(fs)
	fs.StringVar(&o.Logging.Level, "log-level", "warn", "log level: debug, info, warn, error")
	fs.StringVar(&o.Logging.Format, "log-format", "text", "log format: text or json")
	fs.DurationVar(&o.CoordinatorGrace, "coordinator-grace", 0, "how long submit rides out having no coordinator (one restarting, say), for its requests and its wait, before it exits 5, e.g. 2m (env SKEIN_COORDINATOR_GRACE; default 2.5s: the wait exits about 14s after its only coordinator stops)")
}

// maxCoordinatorGrace bounds --coordinator-grace: a longer outage is a
// wait of its own (submit wait JOB, once a coordinator is back).
const maxCoordinatorGrace = 24 * time.Hour

// resolveCoordinatorGrace checks --coordinator-grace, or else
// SKEIN_COORDINATOR_GRACE, and leaves the result in o.CoordinatorGrace
// (newClient gives it to the client). Called before anything is dialled.
func (o *Options) resolveCoordinatorGrace(getenv func(string) string) error {
	d, what := o.CoordinatorGrace, "--coordinator-grace"
	if d == 0 {
		if v := getenv("SKEIN_COORDINATOR_GRACE"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				return usagef("SKEIN_COORDINATOR_GRACE %q: want a duration such as 90s or 5m", v)
			}
			what = "SKEIN_COORDINATOR_GRACE"
		}
	}
	if d < 0 || d > maxCoordinatorGrace {
		return usagef("%s %v: want 0 (the default) up to %v", what, d, maxCoordinatorGrace)
	}
	o.CoordinatorGrace = d
	return nil
}

func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("submit "+name, flag.ContinueOnError)
	// Errors are reported by report(); only -h prints the flag list.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterleaved parses flags that may come after positional
// arguments (submit status JOB --watch).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runJob(ctx context.Context, kind wire.JobKind, args []string, env Env) error {
	o := &Options{}
	s := &o.Spec
	s.Kind = kind
	fs := newFlagSet(string(kind), env)
	commonFlags(fs, o)
	var (
		data, dataFrom, iter, iterFrom, extra string
		timeout, taskTimeout                  time.Duration
		include, exclude                      stringList
		envs                                  = envList{}
		reduceMode                            string
		ff                                    funcFlags
	)
	fs.StringVar(&s.Function, "function", "", "function: a built-in name, go:name, py:module:function, py:@FILE (a callable pickled with cloudpickle) or cmd:argv (required)")
	fs.StringVar(&s.Function, "f", "", "shorthand for --function")
	if kind == wire.JobCall {
		fs.StringVar(&data, "data", "", "the call's arguments as JSON: an object is keyword arguments, a list positional ones")
		fs.StringVar(&dataFrom, "data-from", "", "read arguments (JSON) from a file, or - for stdin; an object is merged with --data")
	} else {
		fs.StringVar(&iter, "iterdata", "", "JSON list: one task per element")
		fs.StringVar(&iterFrom, "iterdata-from", "", "read iterdata (a JSON list) from a file, or - for stdin")
		fs.StringVar(&extra, "extra-params", "", "JSON object merged into every task's keyword arguments")
		fs.Int64Var(&s.ChunkSize, "chunk-size", 0, "split storage objects into chunks of this many bytes")
		fs.IntVar(&s.ChunkN, "chunk-n", 0, "split each storage object into this many chunks")
		fs.IntVar(&s.InvokePoolThreads, "invoke-pool-threads", 0, "task publications in flight (default 500)")
		fs.BoolVar(&s.RemoteInvocation, "remote-invocation", false, "accepted for compatibility: the fan-out always happens in the coordinator, next to the bus")
	}
	if kind == wire.JobMapReduce {
		fs.StringVar(&s.ReduceFunction, "reduce-function", "", "reduce function (required)")
		fs.StringVar(&reduceMode, "reduce-mode", "streaming", "streaming (reducer starts on the first map result) or barrier (after all maps)")
		fs.BoolVar(&s.ReducerOnePerObject, "reducer-one-per-object", false, "one reducer per input storage object")
		fs.BoolVar(&s.ReducerWaitLocal, "reducer-wait-local", false, "run the reducer in this process")
		fs.IntVar(&s.MapRuntimeMemory, "map-runtime-memory", 0, "memory limit of map tasks, MiB")
		fs.IntVar(&s.ReduceRuntimeMemory, "reduce-runtime-memory", 0, "memory limit of the reducer, MiB")
	}
	fs.Var(seconds{&timeout}, "timeout", "job timeout in seconds (0: none)")
	fs.Var(seconds{&taskTimeout}, "task-timeout", "timeout of one task attempt in seconds (0: the job's)")
	fs.IntVar(&s.RuntimeMemory, "runtime-memory", 0, "memory limit of each task, MiB (0: none)")
	fs.IntVar(&s.Retries, "retries", 0, "retries of a failed task")
	fs.BoolVar(&o.NoWait, "no-wait", false, "print the job id and exit (wait_for_result=False)")
	fs.StringVar(&o.StatusFile, "status-file", "", "write the job's final status (counts, timings, completion latency) as JSON to this file")
	fs.BoolVar(&o.NoFetch, "no-fetch", false, "wait for the job but do not fetch its result; print its status (fetch_result=False)")
	if kind != wire.JobMapReduce {
		fs.BoolVar(&o.Stream, "stream", false, `print each task's result as one JSON line as it lands ({"index":…,"result":…}, or the error of the task that failed the job), then {"status":…}`)
	}
	fs.Var(envs, "env", "KEY=VALUE set in the functions' environment (repeatable)")
	fs.Var(&include, "include-modules", "Python modules or paths to ship with the job (repeatable, comma-separated)")
	fs.Var(&exclude, "exclude-modules", "modules or paths to leave out of the shipped code (repeatable)")
	fs.BoolVar(&s.Clean, "clean", false, "remove the job's artifacts from storage when it ends (clean_data)")
	fs.StringVar(&s.Pool, "pool", "", "worker pool (queue) to run on")
	fs.IntVar(&o.Workers, "workers", 0, "embedded mode: local worker slots (default: one per core)")
	ff.register(fs, "submit", DefaultEmbeddedHosts+" embedded, "+DefaultHosts+" for --reducer-wait-local on a bus", false)
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress on stderr")
	jobMonitorFlags(fs, o)

	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, env)
			return err
		}
		return usagef("%v", err)
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (flags only)", pos[0])
	}
	if o.Stream && (o.NoWait || o.NoFetch) {
		return usagef("--stream prints the results as they land: it cannot be combined with --no-wait or --no-fetch")
	}
	if strings.TrimSpace(s.Function) == "" {
		return usagef("--function is required")
	}
	if err := explicitZero(fs); err != nil {
		return err
	}
	if per := chunksPerGB(s.ChunkSize); per > 100_000 {
		fmt.Fprintf(env.Stderr, "submit: warning: --chunk-size %d makes %d chunks (tasks) per GB of input; "+
			"each costs a task and a ranged read, so a chunk size of 1 MB or more is usually faster\n", s.ChunkSize, per)
	}
	s.ReduceMode = wire.ReduceMode(reduceMode)
	s.TimeoutMS, s.TaskTimeoutMS = timeout.Milliseconds(), taskTimeout.Milliseconds()
	if len(envs) > 0 {
		s.Env = envs
	}
	s.IncludeModules, s.ExcludeModules = include, exclude
	if err := shipPickled(s); err != nil {
		return err
	}

	var input *inputSource
	if kind == wire.JobCall {
		input, err = dataInput(data, dataFrom, env)
	} else {
		input, err = iterdataInput(iter, iterFrom, env)
	}
	if err != nil {
		return err
	}
	defer input.Close()
	input.standIn(s)
	if kind != wire.JobCall {
		if extra != "" {
			if err := coordinator.JSONError([]byte(extra)); err != nil {
				return usagef("--extra-params: %v", err)
			}
			if firstNonSpace(extra) != '{' {
				return usagef("--extra-params: must be a JSON object")
			}
			s.ExtraParams = wire.Value(extra)
		}
	}
	if err := coordinator.Validate(s); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "invalid job: "))
	}
	fc, err := loadConfig(o.Config, env.Getenv)
	if err != nil {
		return err
	}
	fc.apply(&o.Bus, &s.Pool, env.Getenv)
	defHosts := DefaultHosts
	if o.Bus == "" {
		defHosts = DefaultEmbeddedHosts
	}
	fo, err := ff.resolve(fc, env.Getenv, defHosts)
	if err != nil {
		return err
	}
	if o.NoWait && o.Bus == "" {
		return usagef("--no-wait needs a bus (--bus or SKEIN_BUS): in embedded mode the job lives only as long as this process")
	}
	if err := o.Monitoring.checkDashboard(o.Bus); err != nil {
		return err
	}
	log, err := o.Logging.Logger(env.Stderr)
	if err != nil {
		return usagef("%v", err)
	}
	if err := o.resolveCoordinatorGrace(env.Getenv); err != nil {
		return err
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	tel, stopTel, err := o.Monitoring.OTel.setup(ctx, env, "skein-submit")
	if err != nil {
		return err
	}
	defer stopTel()
	ctx, span := submitSpan(ctx, tel, s)
	defer span.End()
	if o.Bus == "" {
		o.Embedded = &embedded.Config{Workers: o.Workers, Logger: log}
		o.Embedded.Coordinator.Telemetry, o.Embedded.Runtime.Telemetry = tel, tel
		if s.Monitor == coordinator.MonitorPoll {
			embeddedPoll(o.Embedded, log)
		}
	}
	if env.Extend != nil {
		if err := env.Extend(ctx, o); err != nil {
			return err
		}
	}
	var c *client.Client
	var dashURL string // submit --dashboard
	if o.Bus == "" {
		if o.Embedded.Runtime.Hosts == nil {
			hosts, err := openHosts(fo, env.Getenv, log)
			if err != nil {
				return err
			}
			defer hosts.Close()
			hosts.configure(&o.Embedded.Runtime)
		}
		// One process holds the NATS server, the coordinator and the
		// workers: collect garbage at half the default growth (unless
		// GOGC says otherwise), so that its peak stays near what is live
		// rather than twice it; but not while the live heap is small
		// (the heap floor, SKEIN_GC_FLOOR).
		if env.Getenv("GOGC") == "" {
			defer debug.SetGCPercent(debug.SetGCPercent(50))
		}
		stopGC, err := startGCFloor(env)
		if err != nil {
			return err
		}
		defer stopGC()
		met := o.Monitoring.wireDashboard(o.Embedded)
		cl, err := embedded.Start(ctx, *o.Embedded)
		if err != nil {
			return err
		}
		defer cl.Close()
		c = cl.Client
		if met != nil {
			srv, err := serveEmbeddedDashboard(o.Monitoring.Dashboard, cl, met, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			dashURL = "http://" + srv.Addr()
		}
	} else {
		b := env.Bus
		if b == nil {
			if b, err = o.openBus(ctx, env, log); err != nil {
				return err
			}
			defer b.Close()
		}
		if c, err = o.newClient(b, env, log); err != nil {
			return err
		}
	}
	if o.Client != nil && o.Client.Resolve != nil {
		c.Resolve = o.Client.Resolve
	}
	if o.Client != nil && o.Bus != "" {
		c.StoreInput = o.Client.StoreInput // embedded: chunks on the in-process bus
	}

	if err := input.send(ctx, c, s); err != nil {
		return err
	}
	s.SubmittedAt = time.Now().UnixNano()
	sub, err := c.SubmitStatus(ctx, s)
	if err != nil {
		return err
	}
	id := sub.ID
	if env.Submitted != nil {
		env.Submitted(id)
	}
	if o.NoWait {
		return printJSON(env.Stdout, id)
	}
	if dashURL != "" && !o.Quiet {
		fmt.Fprintf(env.Stderr, "submit: dashboard of job %s: %s/jobs/%s\n", id, dashURL, id)
	}
	var localDone chan struct{}
	var localErr error
	if s.ReducerWaitLocal {
		// reducer_wait_local: this process runs the job's reducers, still
		// streaming: they come on a queue of their own.
		hosts, err := openHosts(fo, env.Getenv, log)
		if err != nil {
			return err
		}
		defer hosts.Close()
		rcfg := runtime.Config{Pool: wire.LocalReducePool(id), Slots: 1, Logger: log, WorkerID: "submit-local-reducer", Transient: true}
		if v, err := o.VerifyKey.verifier(env.Getenv); err != nil {
			return err
		} else if v != nil {
			rcfg.Verifier = v // the local reducer takes only signed tasks and feeds
		}
		hosts.configure(&rcfg)
		if o.ConfigureRuntime != nil {
			o.ConfigureRuntime(&rcfg)
		}
		rt, err := runtime.New(c.Bus(), rcfg)
		if err != nil {
			return err
		}
		rctx, stopLocal := context.WithCancel(ctx)
		localDone = make(chan struct{})
		go func() {
			defer close(localDone)
			// A reducer that cannot run (the bus refuses this user the
			// reducer's queue: a submitter's rights do not include it)
			// ends the wait instead of leaving it hanging.
			if _, err := rt.Run(rctx); err != nil && rctx.Err() == nil {
				localErr = fmt.Errorf("reducer_wait_local: the reducer cannot run in this process: %w", err)
				stop()
			}
		}()
		defer func() { stopLocal(); <-localDone }()
	}
	if env.Signals || env.Interrupt != nil {
		var sig chan os.Signal // nil without Signals: never ready
		if env.Signals {
			sig = make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
		}
		go func() {
			select {
			case <-sig:
			case <-env.Interrupt:
			case <-ctx.Done():
				return
			}
			fmt.Fprintf(env.Stderr, "submit: interrupted: cancelling job %s\n", id)
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = c.Cancel(cctx, id)
		}()
	}
	if o.Stream {
		st, err := streamResults(ctx, c, id, s, env)
		if err != nil {
			return err
		}
		if err := writeStatusFile(o, st); err != nil {
			return err
		}
		if o.Monitoring.Plot != "" {
			if err := writeJobPlot(ctx, c, id, o.Monitoring.Plot); err != nil {
				return err
			}
		}
		if st.State != wire.StateDone {
			return &client.JobError{Status: st}
		}
		cleanup(ctx, o, id, env)
		return nil
	}
	st, err := waitWithProgress(ctx, c, sub, s, o, env)
	if err != nil && localDone != nil && ctx.Err() != nil {
		<-localDone
		if localErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, _ = c.Cancel(cctx, id)
			cancel()
			return localErr
		}
	}
	if err != nil {
		return err
	}
	if err := writeStatusFile(o, st); err != nil {
		return err
	}
	if o.Monitoring.Plot != "" {
		if err := writeJobPlot(ctx, c, id, o.Monitoring.Plot); err != nil {
			return err
		}
	}
	if st.State != wire.StateDone {
		return &client.JobError{Status: st}
	}
	if o.NoFetch {
		cleanup(ctx, o, id, env)
		return printJSON(env.Stdout, st)
	}
	res, err := c.Result(ctx, id)
	if err != nil {
		return err
	}
	cleanup(ctx, o, id, env)
	return printRaw(env.Stdout, res)
}

// writeStatusFile writes st to --status-file, if given.
func writeStatusFile(o *Options, st wire.JobStatus) error {
	if o.StatusFile == "" {
		return nil
	}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(o.StatusFile, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--status-file: %w", err)
	}
	return nil
}

// jsonLineWriter writes JSON lines to out, values as they are (no HTML
// escaping, as results are printed without --stream).
func jsonLineWriter(out io.Writer) (*bufio.Writer, *json.Encoder) {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return w, enc
}

// writeJSONLines writes each value of ch as a JSON line until ch is
// closed, flushing whenever nothing more waits, so that a reader sees
// each line as it comes.
func writeJSONLines[T any](w *bufio.Writer, enc *json.Encoder, ch <-chan T) error {
	for v := range ch {
		if err := enc.Encode(v); err != nil {
			return err
		}
		if len(ch) == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// streamResults prints the job's results as JSON lines as they land,
// then its final status as {"status":…}, and returns that status.
func streamResults(ctx context.Context, c *client.Client, id string, s *wire.JobSpec, env Env) (wire.JobStatus, error) {
	if s.TimeoutMS > 0 {
		// As in waitWithProgress: only a guard against a coordinator
		// that went away.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s.TimeoutMS)*time.Millisecond+30*time.Second)
		defer cancel()
	}
	rs, err := c.Results(ctx, id)
	if err != nil {
		return wire.JobStatus{}, err
	}
	w, enc := jsonLineWriter(env.Stdout)
	if err := writeJSONLines(w, enc, rs.C); err != nil {
		return wire.JobStatus{}, fmt.Errorf("writing a result: %w", err)
	}
	st, err := rs.Status()
	if err != nil {
		_ = w.Flush()
		return st, err
	}
	if err := enc.Encode(struct {
		Status wire.JobStatus `json:"status"`
	}{st}); err != nil {
		return st, fmt.Errorf("writing the status: %w", err)
	}
	return st, w.Flush()
}

// chunksPerGB is how many chunks one gigabyte of input makes at size
// (0 when not chunking by size).
func chunksPerGB(size int64) int64 {
	if size <= 0 {
		return 0
	}
	return (1_000_000_000 + size - 1) / size
}

// explicitZero rejects --chunk-size 0 and --chunk-n 0 given on the
// command line (unset flags are 0 too, and mean "no chunking").
func explicitZero(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if (f.Name == "chunk-size" || f.Name == "chunk-n") && f.Value.String() == "0" && err == nil {
			err = usagef("--%s 0: must be a positive number (leave the flag out for no chunking)", f.Name)
		}
	})
	return err
}

// cleanup removes the artifacts of a --clean job after its result was
// fetched; a failure is a warning (the result is already safe).
func cleanup(ctx context.Context, o *Options, id string, env Env) {
	if !o.Spec.Clean || o.Cleanup == nil {
		return
	}
	if err := o.Cleanup(ctx, id); err != nil {
		fmt.Fprintf(env.Stderr, "submit: warning: removing job %s's artifacts: %v\n", id, err)
	}
}

func waitWithProgress(ctx context.Context, c *client.Client, sub wire.JobStatus, s *wire.JobSpec, o *Options, env Env) (wire.JobStatus, error) {
	if s.TimeoutMS > 0 {
		// The coordinator enforces the timeout; this only guards against a
		// coordinator that went away.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s.TimeoutMS)*time.Millisecond+30*time.Second)
		defer cancel()
	}
	if o.Quiet || o.Monitoring.Progress == "none" {
		return c.WaitFrom(ctx, sub)
	}
	w, err := c.WatchFrom(ctx, sub)
	if err != nil {
		return wire.JobStatus{}, err
	}
	p, err := newProgress(env.Stderr, o.Monitoring.Progress)
	if err != nil {
		return wire.JobStatus{}, err
	}
	var last wire.JobStatus
	for st := range w.C {
		last = st
		p.Update(st)
		if st.State.Terminal() {
			p.Done(st)
			return st, nil
		}
	}
	// The wait for the end failed, and says why (the coordinator lost,
	// ctx): asking the coordinator again would only repeat the checks.
	return last, watchEnded(w, sub.ID)
}

// watchEnded is why w closed before its job's final status.
func watchEnded(w *client.Watcher, id string) error {
	if err := w.Err(); err != nil {
		return err
	}
	return fmt.Errorf("job %s: the watch ended before the job did", id)
}

func firstNonSpace(s string) byte {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	return s[0]
}

func readFrom(name string, env Env) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(env.Stdin)
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func mergeData(data, from string, env Env) (wire.Value, error) {
	if data != "" {
		if err := coordinator.JSONError([]byte(data)); err != nil {
			return nil, usagef("--data: %v", err)
		}
	}
	if from == "" {
		return wire.Value(data), nil
	}
	b, err := readFrom(from, env)
	if err != nil {
		return nil, usagef("--data-from: %v", err)
	}
	if err := coordinator.JSONError(b); err != nil {
		return nil, usagef("--data-from %s: %v", from, err)
	}
	if data == "" {
		return wire.Value(bytes.TrimSpace(b)), nil
	}
	var a, c map[string]json.RawMessage
	if json.Unmarshal([]byte(data), &a) != nil || json.Unmarshal(b, &c) != nil {
		return nil, usagef("--data and --data-from together must both be JSON objects (they are merged)")
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, dup := a[k]; dup {
			return nil, usagef("argument %q is set by both --data and --data-from", k)
		}
		a[k] = c[k]
	}
	out, err := json.Marshal(a)
	return out, err
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printRaw(w, b)
}

// printRaw writes JSON compacted onto one line.
func printRaw(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		buf.Reset()
		buf.Write(b)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func runJobCommand(ctx context.Context, cmd string, args []string, env Env) error {
	o := &Options{}
	fs := newFlagSet(cmd, env)
	commonFlags(fs, o)
	watch := false
	var timeout time.Duration
	if cmd == "status" {
		fs.BoolVar(&watch, "watch", false, "follow the job's progress until it ends")
		fs.Var((*progressFlag)(&o.Monitoring.Progress), "progress", "with --watch: auto (a bar on a terminal, a line every 10s otherwise), bar, lines or none")
	}
	if cmd == "wait" {
		fs.Var(seconds{&timeout}, "timeout", "give up waiting after this many seconds (0: never)")
	}
	var since time.Duration
	if cmd == "events" {
		fs.Var(seconds{&since}, "since", "without a job: start with the events of the last this many seconds (default: from now on)")
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, env)
			return err
		}
		return usagef("%v", err)
	}
	var id string
	if cmd == "events" {
		o.Role = dial.RoleWatcher
	}
	switch {
	case cmd == "events" && len(pos) <= 1:
		if len(pos) == 1 {
			id = pos[0]
		}
	case len(pos) != 1:
		return usagef("%s takes one job id", cmd)
	default:
		id = pos[0]
	}
	fc, err := loadConfig(o.Config, env.Getenv)
	if err != nil {
		return err
	}
	fc.apply(&o.Bus, nil, env.Getenv)
	if o.Bus == "" {
		return usagef("%s needs a bus (--bus or SKEIN_BUS): embedded jobs end with their submit process", cmd)
	}
	log, err := o.Logging.Logger(env.Stderr)
	if err != nil {
		return usagef("%v", err)
	}
	if err := o.resolveCoordinatorGrace(env.Getenv); err != nil {
		return err
	}
	b, err := o.openBus(ctx, env, log)
	if err != nil {
		return err
	}
	defer b.Close()
	c, err := o.newClient(b, env, log)
	if err != nil {
		return err
	}
	o.Client = c
	if env.Extend != nil {
		if err := env.Extend(ctx, o); err != nil {
			return err
		}
	}
	switch cmd {
	case "events":
		if since > 0 && id != "" {
			return usagef("--since is for following every job; a job's events start at its submission")
		}
		var from time.Time
		if since > 0 {
			from = time.Now().Add(-since)
		}
		evs, err := c.JobEvents(ctx, id, from)
		if err != nil {
			return err
		}
		w, enc := jsonLineWriter(env.Stdout)
		if err := writeJSONLines(w, enc, evs); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return ctx.Err()
	case "status":
		if !watch {
			st, err := c.Status(ctx, id)
			if err != nil {
				return err
			}
			return printJSON(env.Stdout, st)
		}
		w, err := c.Watch(ctx, id)
		if err != nil {
			return err
		}
		p, err := newProgress(env.Stderr, o.Monitoring.Progress)
		if err != nil {
			return err
		}
		var last wire.JobStatus
		for st := range w.C {
			last = st
			p.Update(st)
		}
		if !last.State.Terminal() {
			// The watch ended before the job: say why, not "running".
			return watchEnded(w, id)
		}
		p.Done(last)
		return printJSON(env.Stdout, last)
	case "wait":
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		st, err := c.Wait(ctx, id)
		if err != nil {
			return err
		}
		if err := printJSON(env.Stdout, st); err != nil {
			return err
		}
		if st.State != wire.StateDone {
			return &client.JobError{Status: st}
		}
		return nil
	case "result":
		res, err := c.Result(ctx, id)
		if err != nil {
			return err
		}
		return printRaw(env.Stdout, res)
	case "cancel":
		st, err := c.Cancel(ctx, id)
		if err != nil {
			return err
		}
		return printJSON(env.Stdout, st)
	}
	return usagef("unknown command %q", cmd)
}

func printHelp(fs *flag.FlagSet, env Env) {
	fmt.Fprintf(env.Stderr, "usage: %s [flags]\n\nFlags:\n", fs.Name())
	fs.SetOutput(env.Stderr)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// shipPickled turns --function and --reduce-function py:@PATH, a callable
// pickled with cloudpickle in a local file, into py:@NAME shipped with the
// job's modules (NAME is the file's base name). py:@NAME without a path
// separator names a file already among --include-modules.
func shipPickled(s *wire.JobSpec) error {
	names := map[string]string{}
	for _, f := range []*string{&s.Function, &s.ReduceFunction} {
		p, ok := strings.CutPrefix(strings.TrimSpace(*f), "py:@")
		if !ok || !strings.ContainsRune(p, filepath.Separator) {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return usagef("%s: %v", *f, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() {
			return usagef("%s: no such file (a callable pickled with cloudpickle)", *f)
		}
		name := filepath.Base(abs)
		if other, ok := names[name]; ok && other != abs {
			return usagef("the pickled map and reduce functions %s and %s have the same file name; rename one", other, abs)
		}
		if _, ok := names[name]; !ok {
			s.IncludeModules = append(s.IncludeModules, abs)
		}
		names[name] = abs
		*f = "py:@" + name
	}
	return nil
}
