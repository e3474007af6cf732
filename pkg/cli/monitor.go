package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/plot"
	"github.com/skeinrun/skein/pkg/telemetry"
	"github.com/skeinrun/skein/pkg/wire"
)

// MonitorOptions are the monitoring flags of a job command.
type MonitorOptions struct {
	// Progress is --progress: auto, bar, lines or none.
	Progress string
	// Plot is --plot: write the job's plot to this file when it ends.
	Plot string
	// Dashboard is --dashboard: serve the embedded coordinator's
	// dashboard and metrics on this loopback address while the job runs.
	Dashboard string
	OTel      otelFlags
}

// otelFlags are the telemetry flags every program takes; each overrides
// its environment variable.
type otelFlags struct {
	exporter, endpoint string
	insecure           string
}

func (f *otelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.exporter, "otel-exporter", "", "OpenTelemetry exporter: none, stdout (JSON on stderr), otlp-http, otlp-grpc or otlp (env "+telemetry.EnvExporter+"; default none)")
	fs.StringVar(&f.endpoint, "otel-endpoint", "", "OTLP collector URL or host:port (env "+telemetry.EnvEndpoint+")")
	fs.Func("otel-insecure", "no TLS to a host:port collector: true or false (env "+telemetry.EnvInsecure+")", func(v string) error {
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		f.insecure = v
		return nil
	})
}

// setup starts telemetry for service as the flags and env ask (off by
// default). The returned stop flushes the exporters.
func (f *otelFlags) setup(ctx context.Context, env Env, service string) (*telemetry.Telemetry, func(), error) {
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	over := map[string]string{telemetry.EnvExporter: f.exporter, telemetry.EnvEndpoint: f.endpoint, telemetry.EnvInsecure: f.insecure}
	cfg, err := telemetry.ConfigFromEnv(func(k string) string {
		if v := over[k]; v != "" {
			return v
		}
		return getenv(k)
	}, service)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	cfg.Writer = env.Stderr
	tel, shutdown, err := telemetry.Setup(ctx, cfg)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			fmt.Fprintf(env.Stderr, "%s: flushing telemetry: %v\n", service, err)
		}
	}
	return tel, stop, nil
}

// progressFlag is --progress, checked when parsed.
type progressFlag string

func (p *progressFlag) String() string {
	if p == nil || *p == "" {
		return "auto"
	}
	return string(*p)
}

func (p *progressFlag) Set(v string) error {
	if _, ok := progressModes[v]; !ok && v != "none" {
		return fmt.Errorf("want auto, bar, lines or none, got %q", v)
	}
	*p = progressFlag(v)
	return nil
}

// jobMonitorFlags registers the monitoring flags of call, map and
// mapreduce.
func jobMonitorFlags(fs *flag.FlagSet, o *Options) {
	m := &o.Monitoring
	fs.Var((*progressFlag)(&m.Progress), "progress", "progress on stderr: auto (a bar on a terminal, a line every 10s otherwise), bar, lines or none")
	fs.StringVar(&m.Plot, "plot", "", "write the job's timeline plot (HTML) to this file when it ends")
	fs.StringVar(&m.Dashboard, "dashboard", "", "embedded mode: serve the live dashboard and /metrics on this loopback host:port while the job runs (docs/dashboard.md)")
	fs.StringVar(&o.Spec.Monitor, "monitor", "", "completion detection: events (default) or poll (the storage-polling baseline: runtimes write status objects, the coordinator lists them)")
	fs.Func("poll-interval", "with --monitor poll: time between two listings (default 2s)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 2s or 100ms, got %q", v)
		}
		o.Spec.PollIntervalMS = max(d.Milliseconds(), 1)
		return nil
	})
	m.OTel.register(fs)
}

// writeJobPlot replays job id's events from the bus and writes its plot to
// file.
func writeJobPlot(ctx context.Context, c *client.Client, id, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	evs, st, err := c.Events(ctx, id)
	if err != nil {
		return fmt.Errorf("plot of job %s: reading its events: %w", id, err)
	}
	in := plot.Input{Status: st, Events: evs}
	for _, ev := range evs {
		if ev.Kind == wire.TaskReduce && ev.Type == wire.EventDone {
			in.ReducerInputs = append(in.ReducerInputs, ev.Arrivals...)
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("plot of job %s: %w", id, err)
	}
	if err := plot.Write(f, in); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot of job %s: %w", id, err)
	}
	return nil
}

// runPlot is `submit plot JOB [-o FILE]`.
func runPlot(ctx context.Context, args []string, env Env) error {
	o := &Options{}
	fs := newFlagSet("plot", env)
	commonFlags(fs, o)
	out := ""
	fs.StringVar(&out, "o", "", "output file (default JOB.html)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			printHelp(fs, env)
			return err
		}
		return usagef("%v", err)
	}
	if len(pos) != 1 {
		return usagef("plot takes one job id")
	}
	id := pos[0]
	if !validJobID(id) {
		return usagef("job id %q: letters, digits, - and _ only", id)
	}
	if out == "" {
		out = id + ".html"
	}
	c, closeBus, err := dialClient(ctx, o, env, "plot")
	if err != nil {
		return err
	}
	defer closeBus()
	if err := writeJobPlot(ctx, c, id, out); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "submit: plot of job %s written to %s\n", id, out)
	return nil
}

func validJobID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// dialClient connects a job command to the bus the flags or env name.
func dialClient(ctx context.Context, o *Options, env Env, cmd string) (*client.Client, func(), error) {
	if o.Bus == "" {
		o.Bus = env.Getenv("SKEIN_BUS")
	}
	if o.Bus == "" {
		return nil, nil, usagef("%s needs a bus (--bus or SKEIN_BUS): embedded jobs end with their submit process (use --plot FILE on the job command)", cmd)
	}
	log, err := o.Logging.Logger(env.Stderr)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	if err := o.resolveCoordinatorGrace(env.Getenv); err != nil {
		return nil, nil, err
	}
	if env.Bus != nil { // submit serve's open connection
		c, err := o.newClient(env.Bus, env, log)
		return c, func() {}, err
	}
	b, err := o.openBus(ctx, env, log)
	if err != nil {
		return nil, nil, err
	}
	c, err := o.newClient(b, env, log)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return c, func() { b.Close() }, nil
}
