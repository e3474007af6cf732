package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/skeinrun/skein/pkg/cmdhost"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/fnproc"
	"github.com/skeinrun/skein/pkg/pyhost"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// Function hosts an operator may enable (--hosts). Go functions are
// compiled into the runtime and always on.
var knownHosts = []string{"go", "py", "cmd"}

// Defaults of --hosts: a runtime on a bus runs Go and Python functions;
// commands (cmd:) only when its operator enables them. Embedded submit
// enables commands too: its bus lives inside the process, so only the
// user who typed the command gives it tasks, and they run as that user.
const (
	DefaultHosts         = "go,py"
	DefaultEmbeddedHosts = "go,py,cmd"
)

// Environment variables of the function options.
const (
	EnvHosts   = "SKEIN_HOSTS"    // like --hosts
	EnvRunAs   = "SKEIN_RUN_AS"   // like --run-as
	EnvPassEnv = "SKEIN_PASS_ENV" // like --pass-env, comma-separated
)

// funcFlags are the options that decide what functions may do where they
// run: which hosts are on (--hosts), as which user they run (--run-as)
// and which variables of this process's environment they get
// (--pass-env). Flags win over the environment, which wins over the
// config file.
type funcFlags struct {
	program string // in messages: "runtime", "coordinator", "submit"
	hosts   string
	runAs   string
	passEnv stringList
	withRun bool // --run-as is offered
}

func (f *funcFlags) register(fs *flag.FlagSet, program, defHosts string, runAs bool) {
	f.program, f.withRun = program, runAs
	fs.StringVar(&f.hosts, "hosts", "", "function hosts to enable, comma-separated: go (always on), py, cmd (env "+EnvHosts+"; default "+defHosts+")")
	fs.Var(&f.passEnv, "pass-env", "a variable of this process's environment that functions get besides PATH, HOME, LANG, LC_*, TZ, TMPDIR and the like (repeatable, comma-separated; env "+EnvPassEnv+"); SKEIN_* never")
	if runAs {
		fs.StringVar(&f.runAs, "run-as", "", "user that runs py: and cmd: functions: a name, uid or uid:gid (env "+EnvRunAs+"; default nobody when started as root, else this process's user)")
	}
}

// funcOptions are the resolved function options.
type funcOptions struct {
	program string
	hosts   map[string]bool
	list    string // hosts as given, normalised: "go,py"
	runAs   string
	passEnv []string
}

// resolve applies the environment and the config file under the flags
// and checks the result.
func (f *funcFlags) resolve(fc *fileConfig, getenv func(string) string, defHosts string) (funcOptions, error) {
	pick := func(flagV, envName, fileV, def string) string {
		if flagV != "" {
			return flagV
		}
		if v := getenv(envName); v != "" {
			return v
		}
		if fileV != "" {
			return fileV
		}
		return def
	}
	if fc == nil {
		fc = &fileConfig{}
	}
	o := funcOptions{program: f.program}
	var err error
	if o.hosts, o.list, err = parseHosts(pick(f.hosts, EnvHosts, fc.Hosts, defHosts)); err != nil {
		return o, usagef("--hosts: %v", err)
	}
	switch {
	case len(f.passEnv) > 0:
		o.passEnv = f.passEnv
	case getenv(EnvPassEnv) != "":
		var l stringList
		_ = l.Set(getenv(EnvPassEnv))
		o.passEnv = l
	default:
		o.passEnv = fc.PassEnv
	}
	for _, n := range o.passEnv {
		if err := fn.CheckPassEnv(n); err != nil {
			return o, usagef("--%v", err)
		}
	}
	if f.withRun {
		def := ""
		if os.Geteuid() == 0 {
			def = "nobody"
		}
		o.runAs = pick(f.runAs, EnvRunAs, fc.RunAs, def)
	}
	return o, nil
}

// parseHosts checks a --hosts list.
func parseHosts(s string) (map[string]bool, string, error) {
	on := map[string]bool{}
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		known := false
		for _, k := range knownHosts {
			known = known || k == h
		}
		if !known {
			return nil, "", fmt.Errorf("unknown host %q (want go, py, cmd)", h)
		}
		on[h] = true
	}
	if !on["go"] {
		return nil, "", fmt.Errorf("%q: go is always on (Go functions are part of the runtime binary); list it, as in go,py", s)
	}
	var list []string
	for _, k := range knownHosts {
		if on[k] {
			list = append(list, k)
		}
	}
	return on, strings.Join(list, ","), nil
}

// funcHosts are the function hosts of one runtime (or embedded cluster)
// and the setup their processes start with.
type funcHosts struct {
	hosts map[string]fn.Host
	setup *fnproc.Setup
	close []func() error
}

// openHosts starts the enabled hosts; a disabled one is replaced by a
// host that refuses its tasks. The Python interpreter is python3 on PATH
// or SKEIN_PYTHON.
func openHosts(o funcOptions, getenv func(string) string, log *slog.Logger) (*funcHosts, error) {
	setup, err := fnproc.New(fnproc.Config{PassEnv: o.passEnv, RunAs: o.runAs})
	if err != nil {
		return nil, usagef("--%v", err)
	}
	h := &funcHosts{hosts: map[string]fn.Host{}, setup: setup, close: []func() error{setup.Close}}
	if o.hosts["py"] || o.hosts["cmd"] {
		// Functions running as this process's user must not read its
		// environment through /proc.
		if err := fnproc.Protect(); err != nil {
			log.Warn("functions running as this user may read this process's environment", "err", err)
		}
	}
	if o.hosts["py"] {
		pc := pyhost.DefaultConfig()
		if p := getenv("SKEIN_PYTHON"); p != "" {
			pc.Python = p
		}
		pc.Logger, pc.Proc = log, setup
		py, err := pyhost.New(pc)
		switch {
		case errors.Is(err, pyhost.ErrNoInterpreter):
			// An image without Python (the distroless runtime, a native Go
			// action) still runs Go functions; py: tasks fail, saying why.
			log.Warn("python host: no interpreter, py: functions will fail on this runtime", "err", err)
			h.hosts["py"] = &disabledHost{scheme: "py", log: log, typ: ErrNoPython,
				reason: fmt.Sprintf("py: functions cannot run on this runtime: %v; install python3 in the runtime's image (or set SKEIN_PYTHON to an interpreter) and restart it, or run the job on a pool whose runtimes have Python", err)}
		case err != nil:
			h.Close()
			return nil, fmt.Errorf("python host: %w", err)
		default:
			h.add("py", py)
		}
	}
	if o.hosts["cmd"] {
		cc := cmdhost.DefaultConfig()
		cc.Logger, cc.Proc = log, setup
		cmd, err := cmdhost.New(cc)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("command host: %w", err)
		}
		h.add("cmd", cmd)
	}
	for _, k := range knownHosts {
		if _, ok := h.hosts[k]; !ok && k != "go" {
			h.hosts[k] = &disabledHost{scheme: k, log: log, typ: ErrHostDisabled,
				reason: fmt.Sprintf("%s: functions are disabled on this runtime; its operator enables them with %s (or %s, or hosts: in the config file)", k, enableHint(o, k), EnvHosts)}
		}
	}
	log.Info("function hosts", "enabled", o.list, "run_as", setup.User(), "pass_env", strings.Join(o.passEnv, ","))
	return h, nil
}

func (h *funcHosts) add(scheme string, host fn.Host) {
	h.hosts[scheme] = host
	h.close = append(h.close, host.Close)
}

// configure gives cfg the hosts and the environment Go functions see;
// shipped modules go where functions running as another user can read
// them.
func (h *funcHosts) configure(cfg *runtime.Config) {
	cfg.Hosts = h.hosts
	cfg.FuncEnv = h.setup.Env()
	if d := h.setup.SharedDir(); d != "" {
		cfg.ModuleCache = d + "/modules"
	}
}

// Close stops the hosts' processes and removes the functions' directories.
func (h *funcHosts) Close() {
	for i := len(h.close) - 1; i >= 0; i-- {
		_ = h.close[i]()
	}
}

func enableHint(o funcOptions, scheme string) string {
	return fmt.Sprintf("%s --hosts %s,%s", o.program, o.list, scheme)
}

// Types of the error of a task whose function host cannot run it here:
// the operator did not enable it (ErrHostDisabled), or py: is enabled but
// the runtime found no Python interpreter at start (ErrNoPython). Neither
// is retried: another attempt on the same pool would fail the same way.
const (
	ErrHostDisabled = "HostDisabled"
	ErrNoPython     = "NoPythonInterpreter"
)

// disabledHost refuses every call: its scheme cannot run here, for reason.
type disabledHost struct {
	scheme, typ, reason string
	log                 *slog.Logger
}

func (d *disabledHost) Call(ctx context.Context, c *fn.Call) (wire.Value, error) {
	ref := d.scheme + ":" + c.Ref
	if len(ref) > 200 {
		ref = ref[:200] + "…"
	}
	d.log.Warn("refusing a task: its function host cannot run here",
		"job", c.Job, "task", c.Task, "function", ref, "reason", d.reason)
	return nil, &wire.TaskError{Kind: wire.ErrUnknownFn, Type: d.typ, Retryable: false, Message: d.reason}
}

func (d *disabledHost) Close() error { return nil }

var _ fn.Host = (*disabledHost)(nil)
