package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// Bins are the three Skein programs, built once for every round.
type Bins struct{ Dir string }

// Path is the path of program name (coordinator, runtime, submit).
func (b Bins) Path(name string) string { return filepath.Join(b.Dir, name) }

// Build builds coordinator, runtime and submit into dir; with race, the
// programs are built with the race detector (slower, but a data race in
// any of them then shows in its log).
func Build(ctx context.Context, dir string, race bool) (Bins, error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/skeinrun/skein/cmd/coordinator", "github.com/skeinrun/skein/cmd/runtime", "github.com/skeinrun/skein/cmd/submit")
	cmd := exec.CommandContext(ctx, "go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Bins{}, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return Bins{Dir: dir}, nil
}

// Config is one round of the chaos suite.
type Config struct {
	Bins    Bins
	Procs   *Procs // every process of the round; the caller closes it
	Broker  Broker // not started yet; the round starts it
	DataDir string // storage root of the programs, iterdata files

	Tasks       int           // the main job's tasks (default 2000)
	Runtimes    int           // runtimes kept running (default 3)
	Slots       int           // slots of each runtime (default 1)
	Lease       time.Duration // runtimes' --lease (default 3s)
	KillEvery   time.Duration // a runtime is SIGKILLed this often (default 2s)
	JobDeadline time.Duration // every job must end this long after the first submit (default 150s)
	Seed        int64         // picks the runtimes to kill (default: the clock)
	// Busy, when > 0, runs a noop map of that many tasks to its end
	// before the round, so that the event stream a restarted coordinator
	// reads is long with another job's events (issue 12, point 3).
	Busy int
	// Logf reports progress (the test's t.Logf); may be nil.
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if c.Tasks <= 0 {
		c.Tasks = 2000
	}
	if c.Runtimes <= 0 {
		c.Runtimes = 3
	}
	if c.Slots <= 0 {
		c.Slots = 1
	}
	if c.Lease <= 0 {
		c.Lease = 3 * time.Second
	}
	if c.KillEvery <= 0 {
		c.KillEvery = 2 * time.Second
	}
	if c.JobDeadline <= 0 {
		c.JobDeadline = 150 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// The round's schedule, from the first submit.
const (
	brokerKillAt  = 5 * time.Second  // SIGKILL the broker, start it again
	coordKillAt   = 10 * time.Second // SIGKILL the coordinator (at the earliest)
	coordKillWait = 3 * time.Second  // … and not before the broker has served this long
	timeoutAfter  = 3.0              // --timeout of the "timeout" job, seconds
)

// job is one job of a round and what became of it.
type job struct {
	JobResult
	sleep func(i int) float64
	// timeout is --timeout in seconds (0: none); noWait submits with
	// --no-wait and follows with `submit wait`; late submits once the
	// restarted coordinator serves.
	timeout float64
	noWait  bool
	late    bool

	submitted  time.Time
	proc       *Proc // the process whose exit code is the job's outcome (guarded by round.mu)
	cancelProc *Proc // submit cancel, for the cancelled job
	idSet      chan struct{}
}

// value is element i of the job's expected result: the sleep function
// returns its "value" argument, so every element names its job and index.
func (j *job) value(i int) string { return fmt.Sprintf("%s/%d", j.Name, i) }

// shortSleep is 20–50 ms, varied by index.
func shortSleep(i int) float64 { return 0.020 + 0.001*float64((i*7919)%31) }

func (c *Config) jobs() []*job {
	mk := func(name string, tasks int, want wire.JobState, sleep func(int) float64) *job {
		return &job{JobResult: JobResult{Name: name, Tasks: tasks, Want: want}, sleep: sleep, idSet: make(chan struct{})}
	}
	main := mk("main", c.Tasks, wire.StateDone, shortSleep)
	side := mk("side", 300, wire.StateDone, shortSleep)
	// Large, and cancelled as soon as submit --no-wait has its id: the
	// coordinator is still publishing its tasks (issue 12, point 1).
	cancel := mk("cancel", 20000, wire.StateCancelled, func(int) float64 { return 0.05 })
	cancel.noWait = true
	timeout := mk("timeout", 60, wire.StateTimedOut, func(int) float64 { return 1 })
	timeout.timeout = timeoutAfter
	late := mk("late", 200, wire.StateDone, shortSleep)
	late.late = true
	return []*job{main, side, cancel, timeout, late}
}

// round is the state of one running round.
type round struct {
	cfg    Config
	env    []string
	rng    *rand.Rand
	t0     time.Time
	jobs   []*job
	byName map[string]*job

	mu       sync.Mutex
	report   *Report
	coord    *Proc
	ncoord   int
	runtimes []*Proc
	nrt      int
	nsubmit  int
	coordMu  sync.Mutex // held while the coordinator is being replaced
	brokerMu sync.Mutex // held while the broker is being replaced
}

// Run runs one round: it starts the broker, the coordinator and the
// runtimes, submits the jobs, kills runtimes, the broker and the
// coordinator on schedule, waits for every job, and checks every
// outcome. Every failure is in the report's Problems, with its evidence.
// Run leaves the processes running: the caller closes cfg.Procs.
func Run(ctx context.Context, cfg Config) *Report {
	cfg.setDefaults()
	r := &round{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed)), byName: map[string]*job{},
		report: &Report{Bus: cfg.Broker.Bus(), Seed: cfg.Seed, LogDir: cfg.Procs.LogDir}}
	r.env = programEnv(cfg.DataDir)
	r.jobs = cfg.jobs()
	for _, j := range r.jobs {
		r.byName[j.Name] = j
	}
	if err := r.setup(ctx); err != nil {
		r.problem("setup: %v", err)
		return r.report
	}
	r.play(ctx)
	return r.report
}

// programEnv is the environment of the Skein programs: this process's,
// without any SKEIN_ or OTEL_ setting (a developer's SKEIN_BUS or config
// file must not leak in), with storage under dir.
func programEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SKEIN_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "SKEIN_STORAGE_LOCAL_ROOT="+filepath.Join(dir, "storage"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
}

func (r *round) logf(format string, args ...any) {
	r.cfg.Logf(format, args...)
}

// at records a moment of the round's timeline.
func (r *round) at(format string, args ...any) {
	r.record(true, format, args...)
}

// record adds a line to the timeline, and to the progress log when
// show is set (a runtime kill every 2 s is only in the timeline).
func (r *round) record(show bool, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !r.t0.IsZero() {
		line = fmt.Sprintf("%+7.1fs  %s", time.Since(r.t0).Seconds(), line)
	} else {
		line = "  setup   " + line
	}
	r.mu.Lock()
	r.report.Timeline = append(r.report.Timeline, line)
	r.mu.Unlock()
	if show {
		r.logf("%s %s", r.report.Bus, line)
	}
}

func (r *round) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.report.Problems = append(r.report.Problems, msg)
	r.mu.Unlock()
	r.at("PROBLEM: %s", firstLine(msg))
}

func (r *round) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.report.Notes = append(r.report.Notes, msg)
	r.mu.Unlock()
	r.at("note: %s", firstLine(msg))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// setup writes the iterdata files and starts the broker, the
// coordinator and the runtimes.
func (r *round) setup(ctx context.Context) error {
	for _, j := range r.jobs {
		if err := r.writeIterdata(j); err != nil {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := r.cfg.Broker.Start(sctx); err != nil {
		return fmt.Errorf("starting %s: %w", r.cfg.Broker.Bus(), err)
	}
	r.report.Server = r.cfg.Broker.Version()
	r.at("%s up: %s on %s", r.cfg.Broker.Proc().Name, r.report.Server, r.cfg.Broker.URL())
	if err := r.startCoordinator(sctx); err != nil {
		return err
	}
	for i := 0; i < r.cfg.Runtimes; i++ {
		if _, err := r.startRuntime(); err != nil {
			return err
		}
	}
	// A runtime declares the pool's queue when it starts consuming; wait
	// for all of them so that the first jobs meet a complete pool.
	for _, p := range r.liveRuntimes() {
		if err := p.WaitLog(sctx, "runtime started"); err != nil {
			return err
		}
	}
	if r.cfg.Busy > 0 {
		return r.busy(ctx)
	}
	return nil
}

// busy runs the noop map of Config.Busy tasks to its end.
func (r *round) busy(ctx context.Context) error {
	path := filepath.Join(r.cfg.DataDir, "iterdata-busy.json")
	if err := os.WriteFile(path, []byte("["+strings.Repeat("null,", r.cfg.Busy-1)+"null]"), 0o644); err != nil {
		return err
	}
	start := time.Now()
	p, err := r.runSubmit(ctx, 5*time.Minute, "busy", "map", "--function", "noop", "--iterdata-from", path, "--quiet", "--no-fetch")
	if err != nil {
		return err
	}
	if p.ExitCode() != 0 {
		return fmt.Errorf("the busy job (%d noop tasks) before the round: %s; stderr:\n%s", r.cfg.Busy, p.Exit(), p.Tail(20))
	}
	r.at("busy job: %d noop tasks done in %s", r.cfg.Busy, time.Since(start).Round(100*time.Millisecond))
	return nil
}

func (r *round) iterdataPath(j *job) string {
	return filepath.Join(r.cfg.DataDir, "iterdata-"+j.Name+".json")
}

func (r *round) writeIterdata(j *job) error {
	type elem struct {
		X     float64 `json:"x"`
		Value string  `json:"value"`
	}
	elems := make([]elem, j.Tasks)
	for i := range elems {
		elems[i] = elem{X: j.sleep(i), Value: j.value(i)}
	}
	b, err := json.Marshal(elems)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.cfg.DataDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(r.iterdataPath(j), b, 0o644)
}

func (r *round) startCoordinator(ctx context.Context) error {
	r.mu.Lock()
	r.ncoord++
	name := fmt.Sprintf("coordinator-%d", r.ncoord)
	r.mu.Unlock()
	p, err := r.cfg.Procs.Start(ProcSpec{Name: name, Path: r.cfg.Bins.Path("coordinator"), Env: r.env,
		Args: []string{"--bus", r.cfg.Broker.URL(), "--backend", "workers", "--log-level", "info"}})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.coord = p
	r.mu.Unlock()
	if err := p.WaitLog(ctx, "coordinator serving"); err != nil {
		return fmt.Errorf("%s did not come up: %w", name, err)
	}
	r.at("%s serving (pid %d)", name, p.Pid())
	return nil
}

func (r *round) startRuntime() (*Proc, error) {
	r.mu.Lock()
	r.nrt++
	name := fmt.Sprintf("runtime-%d", r.nrt)
	r.mu.Unlock()
	p, err := r.cfg.Procs.Start(ProcSpec{Name: name, Path: r.cfg.Bins.Path("runtime"), Env: r.env,
		Args: []string{"--bus", r.cfg.Broker.URL(), "--slots", strconv.Itoa(r.cfg.Slots), "--lease", r.cfg.Lease.String(),
			"--worker-id", name, "--log-level", "info"}})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.runtimes = append(r.runtimes, p)
	r.mu.Unlock()
	return p, nil
}

func (r *round) liveRuntimes() []*Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var live []*Proc
	for _, p := range r.runtimes {
		if p.Running() {
			live = append(live, p)
		}
	}
	return live
}

// submit starts a submit process; its stdout is kept apart.
func (r *round) submit(name string, args ...string) (*Proc, error) {
	r.mu.Lock()
	r.nsubmit++
	name = fmt.Sprintf("submit-%02d-%s", r.nsubmit, name)
	r.mu.Unlock()
	args = append(args, "--bus", r.cfg.Broker.URL())
	return r.cfg.Procs.Start(ProcSpec{Name: name, Path: r.cfg.Bins.Path("submit"), Env: r.env, Args: args, Split: true})
}

// runSubmit runs a short submit command (cancel, status) to its end,
// killing it after limit.
func (r *round) runSubmit(ctx context.Context, limit time.Duration, name string, args ...string) (*Proc, error) {
	p, err := r.submit(name, args...)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if p.Wait(wctx) != nil {
		p.Kill()
	}
	return p, nil
}

// play runs the jobs and the chaos, then checks the outcome.
func (r *round) play(ctx context.Context) {
	r.t0 = time.Now()
	deadline := r.t0.Add(r.cfg.JobDeadline)
	jctx, cancelJobs := context.WithDeadline(ctx, deadline)
	defer cancelJobs()
	r.at("submitting: main (%d tasks), side, cancel, timeout; late after the coordinator restart", r.cfg.Tasks)

	var jobsWG sync.WaitGroup
	lateGo := make(chan struct{})
	for _, j := range r.jobs {
		jobsWG.Add(1)
		go func(j *job) {
			defer jobsWG.Done()
			if j.late {
				select {
				case <-lateGo:
				case <-jctx.Done():
					r.problem("job %s: never submitted: the coordinator restart did not complete before the deadline", j.Name)
					close(j.idSet)
					return
				}
			} else if j.Name != "main" {
				// The main job first, the others right behind it.
				sleepCtx(jctx, 300*time.Millisecond)
			}
			r.runJob(jctx, j)
		}(j)
	}

	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	if ns, ok := r.cfg.Broker.(*NATSServer); ok {
		go ns.sampleState(sampleCtx, r.cfg.Procs.LogDir)
	}

	chaosCtx, stopChaos := context.WithCancel(jctx)
	var chaosWG sync.WaitGroup
	chaosWG.Add(3)
	go func() { defer chaosWG.Done(); r.killRuntimes(chaosCtx) }()
	go func() { defer chaosWG.Done(); r.supervise(chaosCtx) }()
	go func() { defer chaosWG.Done(); r.script(chaosCtx, lateGo) }()

	jobsWG.Wait()
	r.report.Wall = time.Since(r.t0)
	r.at("every job's submit has exited (or was killed at the deadline)")
	stopChaos()
	chaosWG.Wait()

	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r.postMortem(pctx)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *round) sleepUntil(ctx context.Context, offset time.Duration) bool {
	return sleepCtx(ctx, time.Until(r.t0.Add(offset)))
}

var jobIDLine = regexp.MustCompile(`(?m)^job ([a-z0-9]+) `)

// runJob submits j and waits for its submit to exit (or kills it at the
// deadline).
func (r *round) runJob(ctx context.Context, j *job) {
	args := []string{"map", "--function", "sleep", "--iterdata-from", r.iterdataPath(j), "--progress", "lines", "--log-level", "info"}
	if j.timeout > 0 {
		args = append(args, "--timeout", strconv.FormatFloat(j.timeout, 'f', -1, 64))
	}
	start := time.Now()
	j.submitted = start
	if j.noWait {
		p, err := r.runSubmit(ctx, time.Minute, j.Name+"-nowait", append(args, "--no-wait")...)
		if err != nil {
			r.problem("job %s: %v", j.Name, err)
			close(j.idSet)
			return
		}
		var id string
		if err := json.Unmarshal([]byte(strings.TrimSpace(p.Stdout())), &id); err != nil || p.ExitCode() != 0 {
			r.problem("job %s: submit --no-wait: %s, stdout %q, want exit 0 and the job id; stderr:\n%s", j.Name, p.Exit(), p.Stdout(), p.Tail(30))
			close(j.idSet)
			return
		}
		r.mu.Lock()
		j.ID = id
		r.mu.Unlock()
		close(j.idSet)
		r.at("job %s submitted: %s", j.Name, id)
		w, err := r.submit(j.Name+"-wait", "wait", id, "--log-level", "info")
		if err != nil {
			r.problem("job %s: %v", j.Name, err)
			return
		}
		r.setProc(j, w)
	} else {
		p, err := r.submit(j.Name, args...)
		if err != nil {
			r.problem("job %s: %v", j.Name, err)
			close(j.idSet)
			return
		}
		r.setProc(j, p)
		// The first progress line names the job.
		go func() {
			defer close(j.idSet)
			_ = waitFor(ctx, func() error {
				if m := jobIDLine.FindStringSubmatch(p.Log()); m != nil {
					r.mu.Lock()
					j.ID = m[1]
					r.mu.Unlock()
					return nil
				}
				if !p.Running() {
					return permanentf("exited")
				}
				return fmt.Errorf("no id yet")
			})
			if id := r.jobID(j); id != "" {
				r.at("job %s submitted: %s", j.Name, id)
			}
		}()
	}
	if j.proc.Wait(ctx) != nil {
		r.at("job %s: its submit has not exited by the deadline; killing it", j.Name)
		j.proc.Kill()
		j.Hung = true
	}
	<-j.idSet
	j.Exit = j.proc.ExitCode()
	j.Took = time.Since(start)
	r.at("job %s: %s exited: %s", j.Name, j.proc.Name, j.proc.Exit())
}

func (r *round) setProc(j *job, p *Proc) {
	r.mu.Lock()
	j.proc = p
	r.mu.Unlock()
}

func (r *round) procOf(j *job) *Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return j.proc
}

func (r *round) jobID(j *job) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return j.ID
}

// killRuntimes SIGKILLs a random runtime every KillEvery and keeps
// Runtimes of them running.
func (r *round) killRuntimes(ctx context.Context) {
	tick := time.NewTicker(r.cfg.KillEvery)
	defer tick.Stop()
	seen := map[*Proc]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.mu.Lock()
		all := append([]*Proc(nil), r.runtimes...)
		r.mu.Unlock()
		for _, p := range all {
			if !p.Running() && !p.Killed() && !seen[p] {
				seen[p] = true
				r.note("%s exited by itself: %s; last lines:\n%s", p.Name, p.Exit(), p.Tail(15))
			}
		}
		live := r.liveRuntimes()
		if len(live) > 0 {
			victim := live[r.rng.Intn(len(live))]
			victim.Kill()
			r.mu.Lock()
			r.report.Kills.Runtimes++
			r.mu.Unlock()
			r.record(false, "SIGKILL %s", victim.Name)
		}
		for n := len(r.liveRuntimes()); n < r.cfg.Runtimes; n++ {
			if _, err := r.startRuntime(); err != nil {
				r.problem("starting a runtime: %v", err)
			}
		}
	}
}

// supervise restarts the coordinator and the broker when they exit
// without being killed, as a service manager would, and reports it: a
// program that crashes is a failure of the round.
func (r *round) supervise(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.mu.Lock()
		co := r.coord
		r.mu.Unlock()
		if r.coordMu.TryLock() {
			if co != nil && !co.Running() && !co.Killed() {
				r.problem("%s exited by itself: %s; last lines of its log:\n%s", co.Name, co.Exit(), co.Tail(40))
				if err := r.startCoordinator(ctx); err != nil && ctx.Err() == nil {
					r.problem("restarting the coordinator: %v", err)
				}
			}
			r.coordMu.Unlock()
		}
		if r.brokerMu.TryLock() {
			if b := r.cfg.Broker.Proc(); b != nil && !b.Running() && !b.Killed() {
				r.problem("%s exited by itself: %s; last lines of its log:\n%s", b.Name, b.Exit(), b.Tail(40))
				if err := r.cfg.Broker.Start(ctx); err != nil && ctx.Err() == nil {
					r.problem("restarting the broker: %v", err)
				}
			}
			r.brokerMu.Unlock()
		}
	}
}

// script cancels one job as soon as it is submitted, kills the broker once and the coordinator
// once, and lets the late job go once the new coordinator serves.
func (r *round) script(ctx context.Context, lateGo chan struct{}) {
	lateReleased := false
	defer func() {
		if !lateReleased {
			close(lateGo)
		}
	}()
	go r.cancel(ctx)

	if !r.sleepUntil(ctx, brokerKillAt) {
		return
	}
	r.brokerMu.Lock()
	b := r.cfg.Broker.Proc()
	r.chaosMoment("broker")
	r.at("SIGKILL %s", b.Name)
	b.Kill()
	r.mu.Lock()
	r.report.Kills.Broker++
	r.mu.Unlock()
	err := r.cfg.Broker.Start(ctx)
	r.brokerMu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			r.problem("starting the broker again on its store: %v", err)
		}
		return
	}
	back := time.Now()
	r.at("%s up again on the same store", r.cfg.Broker.Proc().Name)

	if !r.sleepUntil(ctx, max(coordKillAt, back.Add(coordKillWait).Sub(r.t0))) {
		return
	}
	r.coordMu.Lock()
	r.mu.Lock()
	co := r.coord
	r.mu.Unlock()
	r.chaosMoment("coordinator")
	r.at("SIGKILL %s", co.Name)
	co.Kill()
	r.mu.Lock()
	r.report.Kills.Coordinator++
	r.mu.Unlock()
	err = r.startCoordinator(ctx)
	r.coordMu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			r.problem("starting the coordinator again: %v", err)
		}
		return
	}
	lateReleased = true
	close(lateGo)
}

// cancel cancels the "cancel" job as soon as its id is known. A submit
// cancel that fails is a problem (the later failures are notes); it is
// tried again every 2 s for up to a minute, as a user would, so that one
// failure does not leave 20,000 tasks in everyone's way for the rest of
// the round.
func (r *round) cancel(ctx context.Context) {
	cj := r.byName["cancel"]
	select {
	case <-cj.idSet:
	case <-ctx.Done():
		return
	}
	id := r.jobID(cj)
	if id == "" {
		return
	}
	giveUp := time.Now().Add(time.Minute)
	for attempt := 1; ; attempt++ {
		p, err := r.runSubmit(ctx, 15*time.Second, "cancel-cancel", "cancel", id, "--log-level", "info")
		if err != nil {
			r.problem("submit cancel: %v", err)
			return
		}
		r.mu.Lock()
		cj.cancelProc = p
		r.mu.Unlock()
		r.at("submit cancel %s (attempt %d): %s; stdout %s", id, attempt, p.Exit(), strings.TrimSpace(p.Stdout()))
		if p.ExitCode() == exitOK {
			return
		}
		report := r.note
		if attempt == 1 {
			report = r.problem
		}
		report("job cancel (%s): submit cancel (attempt %d): %s, want exit 0; stderr:\n%s", id, attempt, p.Exit(), indent(p.Tail(15)))
		if time.Now().After(giveUp) || !sleepCtx(ctx, 2*time.Second) {
			return
		}
	}
}

// chaosMoment checks that the main job is still running when the broker
// or the coordinator is killed: a round in which it had already ended
// did not test what it claims to.
func (r *round) chaosMoment(what string) {
	if p := r.procOf(r.byName["main"]); p != nil && !p.Running() {
		r.problem("schedule: the main job had ended (%s) before the %s was killed: this round did not test a %s restart mid-job (make the main job longer)", p.Exit(), what, what)
	}
}
