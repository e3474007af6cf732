package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// binDir holds the three programs, built once for the package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skein-bin-")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/skeinrun/skein/cmd/submit", "github.com/skeinrun/skein/cmd/coordinator", "github.com/skeinrun/skein/cmd/runtime")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the programs:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// busKind is one bus the end-to-end tests run on.
type busKind struct {
	name string
	env  string // variable holding the broker URL
}

// buses lists every bus the end-to-end tests run on; each test is a
// table over it.
var buses = []busKind{
	{"nats", testenv.NATSURL},
	{"rabbitmq", testenv.AMQPURL},
}

// namespaced gives each test its own namespace on a shared broker.
func namespaced(t *testing.T, url string) string {
	ns := strings.NewReplacer("/", "-", " ", "-", "_", "-").Replace(strings.ToLower(t.Name()))
	ns = fmt.Sprintf("t%d-%s", time.Now().UnixNano()%1e6, ns)
	if len(ns) > 40 {
		ns = ns[:40]
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "ns=" + ns
}

type proc struct {
	cmd *exec.Cmd
	out *testenv.Buffer
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, name, args...)
}

// startEnv starts a program with extra environment variables.
func startEnv(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(filepath.Join(binDir, name), args...), out: &testenv.Buffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// waitOutput waits until p has printed want.
func waitOutput(t *testing.T, p *proc, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v the output has no %q:\n%s", within, want, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProgress waits, on the job's progress notices, until a job of the
// bus URL's namespace (id, or any job for "") has at least n tasks done.
func waitProgress(t *testing.T, url, id string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	subject := "progress.*"
	if id != "" {
		subject = wire.ProgressSubject(id)
	}
	notes, err := b.Listen(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	for m := range notes {
		var resp wire.Response
		if wire.Decode(m.Data, wire.KindResp, &resp) == nil && resp.Status != nil && resp.Status.Done >= n {
			return
		}
	}
	t.Fatalf("no job of %s reached %d tasks done within a minute", url, n)
}

// indexedSleeps is n elements for the sleep built-in: secs seconds each,
// element i returning i (monitor_e2e_test's sleepIterdata makes random
// sleeps without values).
func indexedSleeps(n int, secs float64) string {
	iter := make([]string, n)
	for i := range iter {
		iter[i] = fmt.Sprintf(`{"x":%g,"value":%d}`, secs, i)
	}
	return "[" + strings.Join(iter, ",") + "]"
}

// submitNoWait submits with --no-wait and returns the job id.
func submitNoWait(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := submit(t, append(args, "--no-wait")...)
	if code != 0 {
		t.Fatalf("submit --no-wait: exit %d: %s", code, errOut)
	}
	var id string
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		t.Fatalf("job id %q: %v", out, err)
	}
	return id
}

// waitForIndexResult waits for the job and checks that its result is
// 0, 1, …, n-1: every task gave its own value exactly once.
func waitForIndexResult(t *testing.T, url, id string, n int) {
	t.Helper()
	if _, errOut, code := submit(t, "wait", id, "--bus", url, "--timeout", "90"); code != 0 {
		t.Fatalf("wait: exit %d: %s", code, errOut)
	}
	out, errOut, code := submit(t, "result", id, "--bus", url)
	if code != 0 {
		t.Fatalf("result: exit %d: %s", code, errOut)
	}
	var got []int
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("result %q: %v", out, err)
	}
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("result %d is %d: every task must give its own value exactly once", i, v)
		}
	}
}

// onBus calls f with a connection of the test's own to url.
func onBus(t *testing.T, url string, f func(ctx context.Context, b bus.Bus)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f(ctx, b)
}

// jobEvents replays a finished job's events from the bus.
func jobEvents(t *testing.T, url, id string) []wire.Event {
	t.Helper()
	var evs []wire.Event
	onBus(t, url, func(ctx context.Context, b bus.Bus) {
		var err error
		if evs, _, err = client.New(b).Events(ctx, id); err != nil {
			t.Fatal(err)
		}
	})
	return evs
}

// cluster starts a coordinator and n runtimes on busURL.
func cluster(t *testing.T, busURL string, runtimes int, runtimeArgs ...string) []*proc {
	return clusterEnv(t, busURL, runtimes, nil, runtimeArgs...)
}

// clusterEnv is cluster with extra environment variables for every process.
func clusterEnv(t *testing.T, busURL string, runtimes int, env []string, runtimeArgs ...string) []*proc {
	co := startEnv(t, env, "coordinator", "--bus", busURL, "--log-level", "debug")
	waitOutput(t, co, "coordinator serving", 10*time.Second)
	var rts []*proc
	for i := 0; i < runtimes; i++ {
		args := append([]string{"--bus", busURL, "--slots", "2", "--worker-id", fmt.Sprintf("rt%d", i), "--log-level", "debug"}, runtimeArgs...)
		rts = append(rts, startEnv(t, env, "runtime", args...))
	}
	return rts
}

// submit runs the submit program and returns stdout, stderr, exit code.
func submit(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return submitEnv(t, nil, args...)
}

// submitEnv is submit with extra environment variables.
func submitEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "submit"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

var seedJobs = []struct {
	name string
	args []string
	want string
}{
	{"call", []string{"call", "--function", "add", "--data", `{"x":1,"y":3}`}, "4\n"},
	{"map", []string{"map", "--function", "add", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`}, "[2,3,4]\n"},
	{"mapreduce", []string{"mapreduce", "--function", "add", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`, "--reduce-function", "product"}, "24\n"},
	{"mapreduce-barrier", []string{"mapreduce", "--function", "add", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`, "--reduce-function", "sum", "--reduce-mode", "barrier"}, "9\n"},
	{"mapreduce-wait-local", []string{"mapreduce", "--function", "add", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`, "--reduce-function", "product", "--reducer-wait-local"}, "24\n"},
}

func TestEmbeddedSeedJobs(t *testing.T) {
	for _, j := range seedJobs {
		t.Run(j.name, func(t *testing.T) {
			out, errOut, code := submit(t, j.args...)
			if code != 0 || out != j.want {
				t.Fatalf("exit %d, stdout %q, want %q; stderr:\n%s", code, out, j.want, errOut)
			}
		})
	}
}

func TestSeedJobsThroughServices(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			cluster(t, url, 2)
			for _, j := range seedJobs {
				t.Run(j.name, func(t *testing.T) {
					out, errOut, code := submit(t, append(j.args, "--bus", url)...)
					if code != 0 || out != j.want {
						t.Fatalf("exit %d, stdout %q, want %q; stderr:\n%s", code, out, j.want, errOut)
					}
				})
			}
			t.Run("no-wait then wait and result", func(t *testing.T) {
				out, errOut, code := submit(t, "map", "--function", "sleep", "--iterdata", `[0.2,0.1]`, "--bus", url, "--no-wait")
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				var id string
				if err := json.Unmarshal([]byte(out), &id); err != nil || !strings.HasPrefix(id, "j") {
					t.Fatalf("--no-wait printed %q, want a JSON string job id", out)
				}
				if out, errOut, code = submit(t, "wait", id, "--bus", url); code != 0 || !strings.Contains(out, `"state":"done"`) {
					t.Fatalf("wait: exit %d, %q, %s", code, out, errOut)
				}
				if out, errOut, code = submit(t, "result", id, "--bus", url); code != 0 || out != "[0.2,0.1]\n" {
					t.Fatalf("result: exit %d, %q, %s", code, out, errOut)
				}
			})
			t.Run("cancel", func(t *testing.T) {
				out, errOut, code := submit(t, "map", "--function", "sleep", "--iterdata", `[5,5,5,5,5,5,5,5]`, "--bus", url, "--no-wait")
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				var id string
				_ = json.Unmarshal([]byte(out), &id)
				if out, errOut, code = submit(t, "cancel", id, "--bus", url); code != 0 || !strings.Contains(out, `"state":"cancelled"`) {
					t.Fatalf("cancel: exit %d, %q, %s", code, out, errOut)
				}
				if _, errOut, code = submit(t, "result", id, "--bus", url); code != cli.ExitCancelled {
					t.Fatalf("result of a cancelled job: exit %d, want %d; %s", code, cli.ExitCancelled, errOut)
				}
			})
		})
	}
}

// TestRuntimeKilledMidJob: SIGKILL one of two runtimes in the middle of a
// 200-task job; the tasks it held are delivered again to the other one,
// and every task still yields its result exactly once.
func TestRuntimeKilledMidJob(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			rts := cluster(t, url, 2, "--lease", "1s")
			id := submitNoWait(t, "map", "--function", "sleep", "--iterdata", indexedSleeps(200, 0.05), "--bus", url, "--timeout", "90")
			// Kill the first runtime once it has done tasks of the job.
			waitProgress(t, url, id, 20)
			if err := rts[0].cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			waitForIndexResult(t, url, id, 200)
			evs := jobEvents(t, url, id)
			redelivered := 0
			for _, ev := range evs {
				if ev.Type != wire.EventStarted && ev.Delivery > 1 {
					redelivered++
				}
			}
			if redelivered == 0 {
				t.Fatalf("no task was delivered again after its runtime was killed (%d events)", len(evs))
			}
			t.Logf("%d tasks delivered again after the kill", redelivered)
		})
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"malformed data", []string{"call", "--function", "add", "--data", `{"x":1,`}, cli.ExitUsage, "--data: malformed JSON at line 1, column 8"},
		{"malformed iterdata", []string{"map", "--function", "add", "--iterdata", "[1,2\n,x]"}, cli.ExitUsage, "line 2, column 2 (byte 6): invalid character 'x'"},
		{"iterdata not a list", []string{"map", "--function", "add", "--iterdata", `{"x":1}`}, cli.ExitUsage, "must be a JSON list, got an object"},
		{"unknown function", []string{"call", "--function", "nosuch", "--data", `{}`}, cli.ExitJobFailed, `unknown function "nosuch"`},
		{"negative timeout", []string{"call", "--function", "add", "--data", `{}`, "--timeout", "-3"}, cli.ExitUsage, "must not be negative"},
		{"unreachable bus", []string{"call", "--function", "add", "--data", `{}`, "--bus", "nats://127.0.0.1:1"}, cli.ExitUnreachable, "cannot reach the bus"},
		{"bad bus scheme", []string{"call", "--function", "add", "--data", `{}`, "--bus", "http://x"}, cli.ExitUsage, "unknown scheme"},
		{"no function", []string{"call", "--data", `{}`}, cli.ExitUsage, "--function is required"},
		{"missing argument", []string{"call", "--function", "add", "--data", `{"x":1}`}, cli.ExitJobFailed, `missing argument "y"`},
		{"function fails", []string{"call", "--function", "fail", "--data", `{"message":"boom"}`}, cli.ExitJobFailed, "boom"},
		{"job timeout", []string{"call", "--function", "sleep", "--data", `{"x":10}`, "--timeout", "0.3"}, cli.ExitTimedOut, "timed out"},
		{"chunk flags together", []string{"map", "--function", "add", "--iterdata", `[1]`, "--chunk-size", "10", "--chunk-n", "2"}, cli.ExitUsage, "chunk_size and chunk_n"},
		{"no-wait embedded", []string{"map", "--function", "add", "--iterdata", `[1]`, "--no-wait"}, cli.ExitUsage, "--no-wait needs a bus"},
		{"unknown command", []string{"frobnicate"}, cli.ExitUsage, "unknown command"},
		{"negative coordinator grace", []string{"map", "--function", "add", "--iterdata", `[1]`, "--coordinator-grace", "-5s"}, cli.ExitUsage, "--coordinator-grace -5s: want 0 (the default) up to 24h0m0s"},
		{"coordinator grace without unit", []string{"wait", "j1", "--bus", "nats://127.0.0.1:1", "--coordinator-grace", "30"}, cli.ExitUsage, `invalid value "30" for flag -coordinator-grace`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			out, errOut, code := submit(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.msg) {
				t.Fatalf("stderr does not say %q:\n%s", tc.msg, errOut)
			}
			if out != "" {
				t.Fatalf("stdout must stay empty on failure, got %q", out)
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("took %v: a bad input must fail fast", time.Since(start))
			}
		})
	}
}

// TestReducerKilledMidStream: SIGKILL the runtime running the reducer
// while maps still stream in; the redelivered reducer replays its feed and
// the answer is right.
func TestReducerKilledMidStream(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			rts := cluster(t, url, 2, "--lease", "1s")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			b, err := dial.Open(ctx, url, dial.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			n, want := 120, 0
			var iter []string
			for i := 0; i < n; i++ {
				iter = append(iter, fmt.Sprintf(`{"x":0.04,"value":%d}`, i))
				want += i
			}
			out, errOut, code := submit(t, "mapreduce", "--function", "sleep", "--iterdata", "["+strings.Join(iter, ",")+"]",
				"--reduce-function", "sum", "--bus", url, "--no-wait")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var id string
			_ = json.Unmarshal([]byte(out), &id)
			evs, err := b.Subscribe(ctx, wire.TaskEvents(id), bus.SubscribeOptions{Since: time.Now().Add(-time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			victim := -1
			for victim < 0 {
				m, ok := <-evs
				if !ok {
					t.Fatal("event stream closed before the reducer started")
				}
				batch, _ := coordinator.DecodeEvents(m.Data)
				for _, ev := range batch {
					if ev.Kind == wire.TaskReduce && ev.Type == wire.EventStarted {
						fmt.Sscanf(ev.Worker, "rt%d", &victim)
					}
				}
			}
			if err := rts[victim].cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			t.Logf("killed rt%d, which ran the reducer", victim)
			if out, errOut, code = submit(t, "wait", id, "--bus", url); code != 0 {
				t.Fatalf("wait: exit %d %s %s", code, out, errOut)
			}
			if out, errOut, code = submit(t, "result", id, "--bus", url); code != 0 || out != fmt.Sprintf("%d\n", want) {
				t.Fatalf("result: exit %d, %q (want %d); %s", code, out, want, errOut)
			}
		})
	}
}

// TestBrokerRestartMidJob: stop and start RabbitMQ in the middle of a
// 500-task job of 50 ms sleeps; the job completes with every result
// right and none duplicated, and the programs log their reconnects.
func TestBrokerRestartMidJob(t *testing.T) {
	// A broker of the test's own: it is stopped and started, and other
	// packages' tests use the shared one meanwhile.
	amqp, ctl := testenv.PrivateRabbitMQ(t)
	url := namespaced(t, amqp)
	rts := cluster(t, url, 2)
	n := 500
	var iter []string
	for i := 0; i < n; i++ {
		iter = append(iter, fmt.Sprintf(`{"x":0.05,"value":%d}`, i))
	}
	type res struct {
		out, errOut string
		code        int
	}
	done := make(chan res, 1)
	go func() {
		o, e, c := submit(t, "map", "--function", "sleep", "--iterdata", "["+strings.Join(iter, ",")+"]", "--bus", url, "--timeout", "150", "--log-level", "info")
		done <- res{o, e, c}
	}()
	waitProgress(t, url, "", 50)
	broker := func(verb string) {
		cmd := exec.Command("sh", "-c", ctl+" "+verb)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", verb, err, out)
		}
	}
	broker("stop-broker")
	time.Sleep(2 * time.Second)
	broker("start-broker")
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	var got []int
	if err := json.Unmarshal([]byte(r.out), &got); err != nil || len(got) != n {
		t.Fatalf("result %.200q: %v", r.out, err)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("result %d is %d", i, v)
		}
	}
	for _, rt := range rts {
		if !strings.Contains(strings.ToLower(rt.out.String()), "reconnect") {
			t.Fatalf("a runtime did not log its reconnect:\n%s", rt.out.String())
		}
	}
	if !strings.Contains(strings.ToLower(r.errOut), "reconnect") {
		t.Fatalf("submit did not log its reconnect:\n%s", r.errOut)
	}
}

// TestCoordinatorKilledMidJob: a waiting submit whose coordinator dies
// (SIGKILL) fails within seconds with a clear message and the
// "unreachable" exit code instead of hanging.
func TestCoordinatorKilledMidJob(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	co := startEnv(t, nil, "coordinator", "--bus", url)
	waitOutput(t, co, "coordinator serving", 10*time.Second)
	start(t, "runtime", "--bus", url, "--slots", "2")
	done := make(chan [3]any, 1)
	go func() {
		o, e, c := submit(t, "map", "--function", "sleep", "--iterdata", `[30,30,30,30]`, "--bus", url)
		done <- [3]any{o, e, c}
	}()
	waitOutput(t, co, "job submitted", 20*time.Second)
	_ = co.cmd.Process.Kill()
	select {
	case r := <-done:
		if r[2].(int) != cli.ExitUnreachable || !strings.Contains(r[1].(string), "coordinator") {
			t.Fatalf("exit %v, stderr %s", r[2], r[1])
		}
	case <-time.After(25 * time.Second):
		t.Fatal("submit still waits 25s after its coordinator died")
	}
}

// TestStatusWatchCoordinatorKilled: `status --watch` of a job whose
// only coordinator dies ends with the "unreachable" exit code and says
// the coordinator was lost, not exit 0 with the job still "running".
func TestStatusWatchCoordinatorKilled(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	co := start(t, "coordinator", "--bus", url)
	waitOutput(t, co, "coordinator serving", 10*time.Second)
	start(t, "runtime", "--bus", url, "--slots", "2")
	id := submitNoWait(t, "map", "--function", "sleep", "--iterdata", `[30,30,30,30]`, "--bus", url)
	done := make(chan [3]any, 1)
	go func() {
		o, e, c := submit(t, "status", id, "--watch", "--progress", "none", "--bus", url)
		done <- [3]any{o, e, c}
	}()
	time.Sleep(time.Second) // the watch is on
	_ = co.cmd.Process.Kill()
	select {
	case r := <-done:
		if r[2].(int) != cli.ExitUnreachable || !strings.Contains(r[1].(string), "coordinator lost") {
			t.Fatalf("exit %v (want %d), stdout %s, stderr %s", r[2], cli.ExitUnreachable, r[0], r[1])
		}
	case <-time.After(40 * time.Second):
		t.Fatal("status --watch still waits 40s after its coordinator died")
	}
}

// TestCoordinatorGraceRidesOutARestart: with --coordinator-grace, a
// submit whose only coordinator dies waits for the next one, which takes
// the job up, and prints the job's result. Without it the submit exits 5
// about 14 s after the death (TestCoordinatorKilledMidJob); here no
// coordinator runs for 20 s.
func TestCoordinatorGraceRidesOutARestart(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	co := startEnv(t, nil, "coordinator", "--bus", url)
	waitOutput(t, co, "coordinator serving", 10*time.Second)
	start(t, "runtime", "--bus", url, "--slots", "2")
	done := make(chan [3]any, 1)
	go func() {
		o, e, c := submit(t, "map", "--function", "sleep", "--iterdata", `[{"x":2,"value":1},{"x":2,"value":2},{"x":2,"value":3},{"x":2,"value":4}]`,
			"--bus", url, "--coordinator-grace", "90s")
		done <- [3]any{o, e, c}
	}()
	waitOutput(t, co, "job submitted", 20*time.Second)
	_ = co.cmd.Process.Kill()
	_ = co.cmd.Wait()
	select {
	case r := <-done:
		t.Fatalf("submit ended while no coordinator ran: exit %v, stdout %s, stderr %s", r[2], r[0], r[1])
	case <-time.After(20 * time.Second):
	}
	co2 := start(t, "coordinator", "--bus", url)
	waitOutput(t, co2, "coordinator serving", 20*time.Second)
	select {
	case r := <-done:
		if r[2].(int) != 0 || r[0].(string) != "[1,2,3,4]\n" {
			t.Fatalf("exit %v, stdout %q, stderr %s", r[2], r[0], r[1])
		}
	case <-time.After(60 * time.Second):
		t.Fatal("submit still waits 60s after a new coordinator started")
	}
}

// TestCoordinatorGraceFromEnv: SKEIN_COORDINATOR_GRACE is read when the
// flag is not given, and a bad value names the variable (exit 2) before
// anything is dialled.
func TestCoordinatorGraceFromEnv(t *testing.T) {
	for _, v := range []string{"soon", "-1m", "48h"} {
		_, errOut, code := submitEnv(t, []string{"SKEIN_COORDINATOR_GRACE=" + v}, "wait", "j1", "--bus", "nats://127.0.0.1:1")
		if code != cli.ExitUsage || !strings.Contains(errOut, "SKEIN_COORDINATOR_GRACE") {
			t.Errorf("SKEIN_COORDINATOR_GRACE=%s: exit %d, want %d naming the variable; stderr:\n%s", v, code, cli.ExitUsage, errOut)
		}
	}
}

// TestCoordinatorRestart: SIGKILL the coordinator in the middle of a job
// and start a new one: it takes the job up from the job log and the event
// stream, and the job ends with every result right.
func TestCoordinatorRestart(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			waitServing := func(p *proc) { waitOutput(t, p, "coordinator serving", 20*time.Second) }
			co := start(t, "coordinator", "--bus", url, "--log-level", "debug")
			waitServing(co)
			start(t, "runtime", "--bus", url, "--slots", "2", "--lease", "2s")
			n, want := 80, 0
			var iter []string
			for i := 0; i < n; i++ {
				iter = append(iter, fmt.Sprintf(`{"x":0.05,"value":%d}`, i))
				want += i
			}
			out, errOut, code := submit(t, "mapreduce", "--function", "sleep", "--iterdata", "["+strings.Join(iter, ",")+"]",
				"--reduce-function", "sum", "--bus", url, "--no-wait")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var id string
			if err := json.Unmarshal([]byte(out), &id); err != nil {
				t.Fatalf("job id %q: %v", out, err)
			}
			waitProgress(t, url, id, 10)
			_ = co.cmd.Process.Kill()
			_ = co.cmd.Wait()
			co2 := start(t, "coordinator", "--bus", url, "--log-level", "debug")
			waitServing(co2)
			if !strings.Contains(co2.out.String(), "job taken up") {
				t.Fatalf("the new coordinator did not take the job up:\n%s", co2.out.String())
			}
			if out, errOut, code = submit(t, "wait", id, "--bus", url); code != 0 {
				t.Fatalf("wait: exit %d %s %s", code, out, errOut)
			}
			if out, errOut, code = submit(t, "result", id, "--bus", url); code != 0 || out != fmt.Sprintf("%d\n", want) {
				t.Fatalf("result: exit %d, %q (want %d); %s", code, out, want, errOut)
			}
		})
	}
}

// An unknown job id is a usage error (exit 2) for every command that
// takes one. (An input larger than one bus message is no error any more:
// TestLargeInputs.)
func TestUnknownJobExitCodes(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	cluster(t, url, 0)
	for _, cmd := range []string{"status", "wait", "result", "cancel", "plot"} {
		_, errOut, code := submit(t, cmd, "jnosuchjob", "--bus", url, "-o", filepath.Join(t.TempDir(), "p.html"))
		if cmd != "plot" {
			_, errOut, code = submit(t, cmd, "jnosuchjob", "--bus", url)
		}
		if code != cli.ExitUsage || !strings.Contains(errOut, "unknown job") {
			t.Errorf("%s of an unknown job: exit %d, want %d; stderr:\n%s", cmd, code, cli.ExitUsage, errOut)
		}
	}
}

// TestJobEndLeavesOtherJobs: a job that ends (here by its timeout, which
// purges its queued tasks) does not touch another job's tasks on the same
// pool: the first job still gets every result. On nats-server 2.9.10 a
// filtered purge used to move the pool's consumer past the first job's
// pending tasks, which then hung at 10/40 for good (for the newer
// servers' fault with held deliveries, see bustest's
// PurgeHeldDeliveries).
func TestJobEndLeavesOtherJobs(t *testing.T) {
	for _, bk := range []busKind{{"nats-oldest", testenv.NATSURL}, {"nats-newest", testenv.NATSURLNewest}, {"rabbitmq", testenv.AMQPURL}} {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			cluster(t, url, 1, "--slots", "1")
			id := submitNoWait(t, "map", "--function", "sleep", "--iterdata", indexedSleeps(40, 0.2), "--bus", url)
			if _, errOut, code := submit(t, "call", "--function", "sleep", "--data", "[1000]", "--timeout", "1", "--bus", url); code != cli.ExitTimedOut {
				t.Fatalf("the second job: exit %d, want %d (timed out): %s", code, cli.ExitTimedOut, errOut)
			}
			waitForIndexResult(t, url, id, 40)
		})
	}
}

// TestLongTasksSpreadOverRuntimes: 40 tasks of 0.5 s on two runtimes of
// two slots each, at the default prefetch: neither runtime runs more than
// 60% of them, and no task runs twice.
func TestLongTasksSpreadOverRuntimes(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			cluster(t, url, 2)
			id := submitNoWait(t, "map", "--function", "sleep", "--iterdata", indexedSleeps(40, 0.5), "--bus", url)
			waitForIndexResult(t, url, id, 40)
			evs := jobEvents(t, url, id)
			perWorker, perTask := map[string]int{}, map[int]int{}
			for _, ev := range evs {
				if ev.Type == wire.EventDone {
					perWorker[ev.Worker]++
					perTask[ev.Task]++
				}
			}
			if len(perTask) != 40 {
				t.Fatalf("%d tasks done, want 40", len(perTask))
			}
			for task, n := range perTask {
				if n != 1 {
					t.Errorf("task %d ran %d times", task, n)
				}
			}
			for w, n := range perWorker {
				if n > 24 {
					t.Errorf("runtime %s ran %d of 40 tasks; want at most 60%% (%v)", w, n, perWorker)
				}
			}
			t.Logf("tasks per runtime: %v", perWorker)
		})
	}
}
