package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// Settings, from the environment (make chaos sets them):
//
//	SKEIN_CHAOS_ROUNDS      rounds per bus (default 1: what make test runs)
//	SKEIN_CHAOS_TASKS       tasks of the main job (default 2000)
//	SKEIN_CHAOS_BUSY        a noop map of this many tasks runs before each round, so that
//	                        a restarted coordinator reads a long event stream (default
//	                        20000; 0: none)
//	SKEIN_CHAOS_SEED        seed of the choice of runtimes to kill
//	SKEIN_CHAOS_RACE        1: build the programs with the race detector
//	SKEIN_CHAOS_NATS_SERVER nats-server binaries, comma-separated: the NATS rounds run
//	                        on each (default: nats-server on PATH)
//	SKEIN_CHAOS_LOG_DIR     where the rounds' logs go (default: $SKEIN_TEST_DIR/chaos,
//	                        else a new directory under the system's temporary one)

var (
	binsOnce sync.Once
	bins     Bins
	binsErr  error
	binDir   string

	totalsMu sync.Mutex
	totals   = map[string]*Totals{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if len(totals) > 0 {
		var ts []*Totals
		for _, t := range totals {
			ts = append(ts, t)
		}
		fmt.Println()
		WriteTable(os.Stdout, ts)
	}
	os.Exit(code)
}

func TestChaosNATS(t *testing.T) {
	var paths []string
	for _, p := range strings.Split(os.Getenv("SKEIN_CHAOS_NATS_SERVER"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		paths = []string{requireBinary(t, "nats-server", "scripts/services/nats.sh installs it")}
	}
	for _, path := range paths {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("SKEIN_CHAOS_NATS_SERVER: %v", err)
		}
		run := func(t *testing.T) {
			runRounds(t, func(procs *Procs, dir string) (Broker, error) { return NewNATSServer(procs, path, dir) })
		}
		if len(paths) == 1 {
			run(t)
			continue
		}
		t.Run(strings.ReplaceAll((&NATSServer{Path: path}).Version(), " ", "-"), run)
	}
}

func TestChaosRabbitMQ(t *testing.T) {
	script := requireBinary(t, filepath.Join(RabbitMQDir, "rabbitmq-server"), "scripts/services/rabbitmq.sh installs it")
	requireBinary(t, "epmd", "it comes with rabbitmq-server's Erlang")
	runRounds(t, func(procs *Procs, dir string) (Broker, error) { return NewRabbitMQServer(procs, script, dir) })
}

// requireBinary finds a program, or fails (under CI) or skips the test.
func requireBinary(t *testing.T, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if name == "epmd" {
		if _, err := os.Stat("/usr/lib/erlang/bin/epmd"); err == nil {
			return "/usr/lib/erlang/bin/epmd"
		}
	}
	if testenv.CI() {
		t.Fatalf("%s not found (%v): %s; under CI a missing broker is a failure", name, err, how)
	}
	t.Skipf("%s not found (%v): %s", name, err, how)
	return ""
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number ≥ 0", name, v)
	}
	return n
}

func buildPrograms(t *testing.T) Bins {
	binsOnce.Do(func() {
		binDir, binsErr = os.MkdirTemp("", "skein-chaos-bin-")
		if binsErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		bins, binsErr = Build(ctx, binDir, os.Getenv("SKEIN_CHAOS_RACE") == "1")
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

func logRoot(t *testing.T) string {
	if d := os.Getenv("SKEIN_CHAOS_LOG_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("SKEIN_TEST_DIR"); d != "" {
		return filepath.Join(d, "chaos")
	}
	return filepath.Join(os.TempDir(), "skein-chaos")
}

// runRounds runs SKEIN_CHAOS_ROUNDS rounds on one bus, each a subtest.
func runRounds(t *testing.T, newBroker func(*Procs, string) (Broker, error)) {
	b := buildPrograms(t)
	rounds := envInt(t, "SKEIN_CHAOS_ROUNDS", 1)
	tasks := envInt(t, "SKEIN_CHAOS_TASKS", 2000)
	if tasks == 0 {
		t.Fatal("SKEIN_CHAOS_TASKS=0: the main job needs tasks")
	}
	busy := envInt(t, "SKEIN_CHAOS_BUSY", 20000)
	var seed int64
	if v := os.Getenv("SKEIN_CHAOS_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	for i := 1; i <= rounds; i++ {
		t.Run(fmt.Sprintf("round%d", i), func(t *testing.T) {
			ctx, procs, broker, dataDir := roundSetup(t, newBroker)
			r := Run(ctx, Config{Bins: b, Procs: procs, Broker: broker, DataDir: filepath.Join(dataDir, "programs"),
				Tasks: tasks, Busy: busy, Seed: seed, Logf: t.Logf})
			totalsMu.Lock()
			tot := totals[r.Bus+" "+r.Server]
			if tot == nil {
				tot = &Totals{}
				totals[r.Bus+" "+r.Server] = tot
			}
			tot.Add(r)
			totalsMu.Unlock()
			t.Log("\n" + r.Summary())
			if r.Failed() {
				t.Errorf("\n%s\n%s", r.Details(), processLogs(procs))
			}
		})
	}
}

// processLogs is the end of every process's log, for a failed round
// (the whole logs stay in the log directory). Runtimes that logged
// nothing but their start are listed, not printed.
func processLogs(procs *Procs) string {
	var b strings.Builder
	fmt.Fprintf(&b, "process logs (in full in %s):\n", procs.LogDir)
	var quiet []string
	for _, prefix := range []string{"coordinator", "nats-server", "rabbitmq-server", "submit", "runtime"} {
		for _, p := range procs.All() {
			if !strings.HasPrefix(p.Name, prefix) {
				continue
			}
			log := p.Log()
			if prefix == "runtime" && len(grep(log, "level=WARN", "level=ERROR", "panic", "DATA RACE")) == 0 {
				quiet = append(quiet, p.Name)
				continue
			}
			n := map[string]int{"coordinator": 80, "submit": 15, "runtime": 15}[prefix]
			if n == 0 {
				n = 30
			}
			fmt.Fprintf(&b, "--- %s (pid %d, %s):\n%s\n", p.Name, p.Pid(), p.Exit(), indent(tail(log, n)))
		}
	}
	if len(quiet) > 0 {
		fmt.Fprintf(&b, "--- runtimes that logged no warning or error: %s\n", strings.Join(quiet, " "))
	}
	return b.String()
}

// roundSetup gives a round its process table (logs under logRoot), its
// broker (not started yet) and data directory, both stopped and removed
// when the test ends, and a context that ends 30 s before the test's
// deadline.
func roundSetup(t *testing.T, newBroker func(*Procs, string) (Broker, error)) (context.Context, *Procs, Broker, string) {
	t.Helper()
	dataDir := t.TempDir()
	logDir := filepath.Join(logRoot(t), fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().Format("20060102-150405")))
	procs, err := NewProcs(logDir)
	if err != nil {
		t.Fatal(err)
	}
	// Every process is stopped at the end, whatever happens.
	t.Cleanup(procs.Close)
	broker, err := newBroker(procs, filepath.Join(dataDir, "broker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		t.Cleanup(cancel)
	}
	return ctx, procs, broker, dataDir
}
