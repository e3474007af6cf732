package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/internal/stats"
)

// A fleet round (issue 14): several coordinators share one namespace,
// jobs run on all of them, and a random coordinator is SIGKILLed and
// started again on a schedule. Every job's result must be exact. The
// takeover time of each job a killed coordinator held (SIGKILL to "job
// taken up" in another coordinator's log) is measured.

// FleetConfig is one fleet round.
type FleetConfig struct {
	Bins    Bins
	Procs   *Procs // every process of the round; the caller closes it
	Broker  Broker // not started yet; the round starts it
	DataDir string

	Coordinators int           // default 3
	Jobs         int           // concurrent jobs (default 20)
	Tasks        int           // tasks per job (default 60)
	Sleep        float64       // seconds per task (default 0.2; negative: none)
	Runtimes     int           // default 3
	Slots        int           // per runtime (default 4)
	KillEvery    time.Duration // a coordinator is SIGKILLed this often (default 5s; negative: never)
	Kills        int           // stop killing after this many (0: until the jobs end)
	Lease        time.Duration // coordinators' --lease (0: their default)
	// Pause, when set, makes every other chaos action (the first one
	// too) a pause instead of a kill: a coordinator is SIGSTOPped for Pause (longer than the
	// lease), then goes on. It must not act again on the jobs the others
	// took over meanwhile.
	Pause    time.Duration
	Deadline time.Duration // every job ends within this (default 4m)
	Seed     int64
	Logf     func(format string, args ...any)
}

func (c *FleetConfig) setDefaults() {
	if c.Coordinators <= 0 {
		c.Coordinators = 3
	}
	if c.Jobs <= 0 {
		c.Jobs = 20
	}
	if c.Tasks <= 0 {
		c.Tasks = 60
	}
	if c.Sleep == 0 {
		c.Sleep = 0.2
	}
	if c.Runtimes <= 0 {
		c.Runtimes = 3
	}
	if c.Slots <= 0 {
		c.Slots = 4
	}
	if c.KillEvery == 0 {
		c.KillEvery = 5 * time.Second
	}
	if c.Deadline <= 0 {
		c.Deadline = 4 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// FleetReport is what a fleet round found.
type FleetReport struct {
	Bus, Server        string
	Seed               int64
	Wall               time.Duration // first submit to the last job's end
	Kills              int
	Pauses             int
	TakenFromPaused    int             // jobs taken over from a paused coordinator
	Takeovers          []time.Duration // SIGKILL of an owner to one of its jobs taken up
	JobsPerCoordinator map[string]int
	Problems           []string
	LogDir             string
}

// Failed reports whether the round found a problem.
func (r *FleetReport) Failed() bool { return len(r.Problems) > 0 }

// Summary is the round in a few lines.
func (r *FleetReport) Summary() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "fleet on %s (%s), seed %d: %d coordinator kills, %d pauses (%d jobs taken from paused ones), wall %v\n", r.Bus, r.Server, r.Seed, r.Kills, r.Pauses, r.TakenFromPaused, r.Wall.Round(100*time.Millisecond))
	if len(r.Takeovers) > 0 {
		ms := make([]float64, len(r.Takeovers))
		for i, d := range r.Takeovers {
			ms[i] = float64(d.Milliseconds())
		}
		fmt.Fprintf(&sb, "takeovers: %d, p50 %.0f ms, p99 %.0f ms\n", len(ms), stats.Percentile(ms, 50), stats.Percentile(ms, 99))
	}
	fmt.Fprintf(&sb, "jobs accepted per coordinator: %v\n", r.JobsPerCoordinator)
	for _, p := range r.Problems {
		fmt.Fprintf(&sb, "PROBLEM: %s\n", p)
	}
	fmt.Fprintf(&sb, "logs: %s\n", r.LogDir)
	return sb.String()
}

type fleet struct {
	cfg    FleetConfig
	env    []string
	rng    *rand.Rand
	report *FleetReport

	mu     sync.Mutex
	coords []*Proc
	ids    map[*Proc]string // a coordinator's id, from its "coordinator serving" line
	n      int
	kills  []fleetKill
}

type fleetKill struct {
	id    string
	at    time.Time
	pause bool
}

// RunFleet runs one fleet round. It leaves the processes running: the
// caller closes cfg.Procs.
func RunFleet(ctx context.Context, cfg FleetConfig) *FleetReport {
	cfg.setDefaults()
	f := &fleet{cfg: cfg, env: programEnv(cfg.DataDir), rng: rand.New(rand.NewSource(cfg.Seed)), ids: map[*Proc]string{},
		report: &FleetReport{Bus: cfg.Broker.Bus(), Seed: cfg.Seed, LogDir: cfg.Procs.LogDir, JobsPerCoordinator: map[string]int{}}}
	if err := f.run(ctx); err != nil {
		f.problem("%v", err)
	}
	return f.report
}

func (f *fleet) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.report.Problems = append(f.report.Problems, fmt.Sprintf(format, args...))
}

var servingID = regexp.MustCompile(`msg="coordinator serving".* id=(\S+)`)

func (f *fleet) startCoordinator(ctx context.Context) (*Proc, error) {
	f.mu.Lock()
	f.n++
	name := fmt.Sprintf("coordinator-%d", f.n)
	f.mu.Unlock()
	args := []string{"--bus", f.cfg.Broker.URL(), "--backend", "workers", "--log-level", "info"}
	if f.cfg.Lease > 0 {
		args = append(args, "--lease", f.cfg.Lease.String())
	}
	p, err := f.cfg.Procs.Start(ProcSpec{Name: name, Path: f.cfg.Bins.Path("coordinator"), Env: f.env, Args: args})
	if err != nil {
		return nil, err
	}
	if err := p.WaitLog(ctx, "coordinator serving"); err != nil {
		return nil, fmt.Errorf("%s did not come up: %w\n%s", name, err, p.Tail(20))
	}
	m := servingID.FindStringSubmatch(p.Log())
	if m == nil {
		return nil, fmt.Errorf("%s: no id in its \"coordinator serving\" line", name)
	}
	f.mu.Lock()
	f.coords = append(f.coords, p)
	f.ids[p] = m[1]
	f.mu.Unlock()
	f.cfg.Logf("%s serving as %s (pid %d)", name, m[1], p.Pid())
	return p, nil
}

func (f *fleet) value(job, i int) string { return fmt.Sprintf("f%d/%d", job, i) }

func (f *fleet) run(ctx context.Context) error {
	cfg := f.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cfg.Broker.Start(sctx); err != nil {
		return fmt.Errorf("starting %s: %w", cfg.Broker.Bus(), err)
	}
	f.report.Server = cfg.Broker.Version()
	for range cfg.Coordinators {
		if _, err := f.startCoordinator(sctx); err != nil {
			return err
		}
	}
	var rts []*Proc
	for i := range cfg.Runtimes {
		p, err := cfg.Procs.Start(ProcSpec{Name: fmt.Sprintf("runtime-%d", i+1), Path: cfg.Bins.Path("runtime"), Env: f.env,
			Args: []string{"--bus", cfg.Broker.URL(), "--slots", strconv.Itoa(cfg.Slots), "--log-level", "info"}})
		if err != nil {
			return err
		}
		rts = append(rts, p)
	}
	for _, p := range rts {
		if err := p.WaitLog(sctx, "runtime started"); err != nil {
			return err
		}
	}

	type elem struct {
		X     float64 `json:"x"`
		Value string  `json:"value"`
	}
	submits := make([]*Proc, cfg.Jobs)
	want := make([]string, cfg.Jobs)
	t0 := time.Now()
	for k := range cfg.Jobs {
		elems := make([]elem, cfg.Tasks)
		vals := make([]string, cfg.Tasks)
		for i := range elems {
			elems[i] = elem{X: max(cfg.Sleep, 0), Value: f.value(k, i)}
			vals[i] = f.value(k, i)
		}
		in, _ := json.Marshal(elems)
		out, _ := json.Marshal(vals)
		want[k] = string(out)
		path := filepath.Join(cfg.DataDir, fmt.Sprintf("iterdata-%d.json", k))
		if err := os.WriteFile(path, in, 0o644); err != nil {
			return err
		}
		p, err := cfg.Procs.Start(ProcSpec{Name: fmt.Sprintf("submit-%02d", k), Path: cfg.Bins.Path("submit"), Env: f.env, Split: true,
			Args: []string{"map", "--function", "sleep", "--iterdata-from", path, "--bus", cfg.Broker.URL()}})
		if err != nil {
			return err
		}
		submits[k] = p
	}

	// The killer: a random coordinator every KillEvery, replaced at once.
	done := make(chan struct{})
	var killer sync.WaitGroup
	if cfg.KillEvery > 0 {
		killer.Add(1)
		go func() {
			defer killer.Done()
			t := time.NewTicker(cfg.KillEvery)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if cfg.Kills > 0 && len(f.kills) >= cfg.Kills {
					continue
				}
				f.mu.Lock()
				var live []*Proc
				for _, p := range f.coords {
					if p.Running() {
						live = append(live, p)
					}
				}
				f.mu.Unlock()
				if len(live) == 0 {
					continue
				}
				victim := live[f.rng.Intn(len(live))]
				at := time.Now()
				f.mu.Lock()
				pause := cfg.Pause > 0 && len(f.kills)%2 == 0
				f.kills = append(f.kills, fleetKill{id: f.ids[victim], at: at, pause: pause})
				f.mu.Unlock()
				if pause {
					cfg.Logf("%+6.1fs SIGSTOP %s (%s) for %v", time.Since(t0).Seconds(), victim.Name, f.ids[victim], cfg.Pause)
					victim.Pause(cfg.Pause)
					continue
				}
				victim.Kill()
				cfg.Logf("%+6.1fs SIGKILL %s (%s)", time.Since(t0).Seconds(), victim.Name, f.ids[victim])
				if _, err := f.startCoordinator(ctx); err != nil {
					f.problem("replacing a killed coordinator: %v", err)
					return
				}
			}
		}()
	}

	jctx, jcancel := context.WithTimeout(ctx, cfg.Deadline)
	defer jcancel()
	for k, p := range submits {
		if err := p.Wait(jctx); err != nil {
			p.Kill()
			f.problem("job %d: not done within %v\n%s", k, cfg.Deadline, p.Tail(15))
			continue
		}
		got := strings.TrimSpace(p.Stdout())
		switch {
		case p.ExitCode() != 0:
			f.problem("job %d: submit %s\n%s", k, p.Exit(), p.Tail(15))
		case got != want[k]:
			f.problem("job %d: result not exact: got %.300s…", k, got)
		}
	}
	f.report.Wall = time.Since(t0)
	close(done)
	killer.Wait()
	for _, k := range f.kills {
		if k.pause {
			f.report.Pauses++
		} else {
			f.report.Kills++
		}
	}
	f.takeovers()
	return nil
}

var (
	takenUp   = regexp.MustCompile(`^time=(\S+) .*msg="job taken up" job=(\S+) .*previous=(\S+)`)
	submitted = regexp.MustCompile(`msg="job submitted" job=(\S+)`)
	jobEnded  = regexp.MustCompile(`^time=(\S+) .*msg="job ended" job=(\S+)`)
	dropped   = regexp.MustCompile(`msg="job dropped" job=(\S+)`)
)

// takeovers reads the coordinators' logs: for each kill, the time from
// the SIGKILL to each job of the dead coordinator being taken up; for
// each pause, the jobs taken from the stopped coordinator, which must drop
// them when it goes on and never end them unless it takes them up again.
func (f *fleet) takeovers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	killedAt := map[string]time.Time{}
	type window struct{ from, to time.Time }
	pauses := map[string][]window{}
	for _, k := range f.kills {
		if k.pause {
			pauses[k.id] = append(pauses[k.id], window{k.at, k.at.Add(f.cfg.Pause)})
			continue
		}
		killedAt[k.id] = k.at
	}
	type take struct {
		job, from, by string
		at            time.Time
	}
	var takes []take
	// what[id][job]: the times coordinator id took the job up, dropped it,
	// and recorded its end.
	type seen struct{ up, dropped, ended []time.Time }
	what := map[string]map[string]*seen{}
	note := func(id, job string) *seen {
		if what[id] == nil {
			what[id] = map[string]*seen{}
		}
		if what[id][job] == nil {
			what[id][job] = &seen{}
		}
		return what[id][job]
	}
	stamp := regexp.MustCompile(`^time=(\S+) `)
	for _, p := range f.cfg.Procs.All() {
		id, ok := f.ids[p]
		if !ok {
			continue
		}
		file, err := os.Open(p.LogPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			ts := stamp.FindStringSubmatch(line)
			if ts == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, ts[1])
			if err != nil {
				continue
			}
			if submitted.MatchString(line) {
				f.report.JobsPerCoordinator[id]++
			}
			if m := dropped.FindStringSubmatch(line); m != nil {
				n := note(id, m[1])
				n.dropped = append(n.dropped, at)
			}
			if m := jobEnded.FindStringSubmatch(line); m != nil {
				n := note(id, m[2])
				n.ended = append(n.ended, at)
			}
			if m := takenUp.FindStringSubmatch(line); m != nil {
				n := note(id, m[2])
				n.up = append(n.up, at)
				takes = append(takes, take{job: m[2], from: m[3], by: id, at: at})
				if k, dead := killedAt[m[3]]; dead && at.After(k) {
					f.report.Takeovers = append(f.report.Takeovers, at.Sub(k))
				}
			}
		}
		file.Close()
	}
	within := func(ts []time.Time, from, to time.Time) bool {
		for _, t := range ts {
			if !t.Before(from) && !t.After(to) {
				return true
			}
		}
		return false
	}
	for _, tk := range takes {
		for _, w := range pauses[tk.from] {
			// Taken while the owner was stopped (or just after, from a
			// claim made while it was).
			if tk.at.Before(w.from) || tk.at.After(w.to.Add(3*time.Second)) {
				continue
			}
			f.report.TakenFromPaused++
			n := note(tk.from, tk.job)
			// Its next take-up of the job, if any, is when it may act again.
			until := time.Now()
			for _, u := range n.up {
				if u.After(tk.at) && u.Before(until) {
					until = u
				}
			}
			if within(n.ended, tk.at, until) {
				f.report.Problems = append(f.report.Problems, fmt.Sprintf("job %s: taken over by %s at %s from the paused coordinator %s, which still recorded the job's end", tk.job, tk.by, tk.at.Format(time.RFC3339Nano), tk.from))
			}
			killed, wasKilled := killedAt[tk.from]
			goesOn := !wasKilled || killed.After(w.to.Add(3*time.Second))
			if goesOn && !within(n.dropped, w.from, w.to.Add(3*time.Second)) {
				f.report.Problems = append(f.report.Problems, fmt.Sprintf("job %s: taken over by %s at %s from the paused coordinator %s, which did not log that it dropped the job when it went on", tk.job, tk.by, tk.at.Format(time.RFC3339Nano), tk.from))
			}
		}
	}
}
