package nats

import (
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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
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

// createStreams connects as the namespace's coordinator, which creates
// the namespace's streams (no other role may).
func (s *server) createStreams(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, s.url+"?ns="+ns, dial.Options{Role: dial.RoleCoordinator, Credentials: dial.Credentials{User: ns + "-coordinator", Password: s.pw[ns+"-coordinator"]}})
	if err != nil {
		t.Fatalf("coordinator of %s: %v", ns, err)
	}
	b.Close()
}

func TestSubmitterRights(t *testing.T) {
	s := startServer(t, "", "a", "b")
	s.createStreams(t, "a")
	s.createStreams(t, "b")
	tasks, events := s.msgs(t, "a", "TASKS"), s.msgs(t, "a", "EVENTS")

	c := s.connect(t, "a", "submitter")
	// It cannot publish a task, an event, an end record, a feed, a
	// cancel notice or progress.
	for _, subj := range []string{"a.task.default.j1", "a.ev.task.j1", "a.ev.job.j1.end", "a.ev.job.j1.spec", "a.ev.feed.j1.0", "a.bc.cancel", "a.bc.progress.j1", "b.rpc.api.result"} {
		if err := c.nc.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	// It cannot listen to another namespace, to the coordinator's or
	// runtimes' inboxes, to the API (to impersonate the coordinator), or
	// to the raw event and task subjects.
	for _, subj := range []string{"b.bc.progress.*", "b.>", ">", "_INBOX.a.coordinator.>", "_INBOX.a.runtime.>", "_INBOX.>", "a.rpc.api.submit", "a.bc.cancel", "a.ev.>", "a.task.>"} {
		if _, err := c.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	// Through JetStream it may replay only end records and task events
	// of its own namespace: no job specs (they carry --env values), no
	// feeds, no tasks, nothing of namespace b, no unfiltered consumer.
	for _, subj := range []string{
		"$JS.API.CONSUMER.CREATE.B_EVENTS.x.b.ev.job.*.end",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.job.*.spec",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.>",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x",
		"$JS.API.CONSUMER.DURABLE.CREATE.A_EVENTS.x",
		"$JS.API.CONSUMER.CREATE.A_TASKS.q-default.a.task.default.>",
		"$JS.API.CONSUMER.MSG.NEXT.A_TASKS.q-default",
		"$JS.API.STREAM.PURGE.A_TASKS",
		"$JS.API.STREAM.DELETE.A_EVENTS",
		"$JS.API.STREAM.INFO.B_TASKS",
	} {
		if err := c.nc.PublishRequest(subj, "_INBOX.a.submitter.x", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	// What it needs is allowed: an end-record replay of its namespace.
	js, err := jetstream.New(c.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.OrderedConsumer(ctx, "A_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"a.ev.job.j1.end"}}); err != nil {
		t.Fatalf("submitter cannot replay its namespace's end records: %v", err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := s.msgs(t, "a", "TASKS"); got != tasks {
		t.Errorf("tasks stream holds %d messages, want %d: a forged task got through", got, tasks)
	}
	if got := s.msgs(t, "a", "EVENTS"); got != events {
		t.Errorf("events stream holds %d messages, want %d: a forged event got through", got, events)
	}
}

func TestRuntimeRights(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a", "b")
	s.createStreams(t, "a")
	s.createStreams(t, "b")
	events := s.msgs(t, "a", "EVENTS")
	c := s.connect(t, "a", "runtime")
	for _, subj := range []string{"a.ev.job.j1.end", "a.ev.job.j1.spec", "a.ev.feed.j1.0", "a.task.default.j1", "a.bc.cancel", "a.bc.progress.j1", "a.rpc.api.submit", "b.ev.task.j1"} {
		if err := c.nc.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	for _, subj := range []string{"a.rpc.api.*", "a.bc.progress.*", "_INBOX.a.coordinator.>", "_INBOX.a.submitter.>", "b.bc.cancel", "a.ev.>"} {
		if _, err := c.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	// Only its pools (-p default: default and default-reduce), and of
	// the event stream only reducer feeds.
	for _, subj := range []string{
		"$JS.API.CONSUMER.CREATE.A_TASKS.q-gpu.a.task.gpu.>",
		"$JS.API.CONSUMER.CREATE.A_TASKS.q-default.a.task.>",
		"$JS.API.CONSUMER.CREATE.A_TASKS.q-default",
		"$JS.API.CONSUMER.MSG.NEXT.A_TASKS.q-gpu",
		"$JS.API.CONSUMER.CREATE.B_TASKS.q-default.b.task.default.>",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.task.*",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.job.*.spec",
		"$JS.API.STREAM.PURGE.A_TASKS",
	} {
		if err := c.nc.PublishRequest(subj, "_INBOX.a.runtime.x", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	if got := s.msgs(t, "a", "EVENTS"); got != events {
		t.Errorf("events stream holds %d messages, want %d: a forged end record got through", got, events)
	}
}

// proc is a program started for a test, stopped (SIGTERM) at its end.
type proc struct {
	cmd *exec.Cmd
	out *testenv.Buffer
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
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
			t.Logf("%s %v output:\n%s", name, args, p.out.String())
		}
	})
	return p
}

// run runs a program to its end and returns its exit code and output.
func run(t *testing.T, env []string, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr testenv.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not end within a minute:\n%s", name, args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// roleEnv is the environment that gives a program a role's credentials:
// the password comes from the environment, never the command line.
func (s *server) roleEnv(ns, role string) []string {
	u := strings.Replace(s.url, "://", "://"+ns+"-"+role+"@", 1) + "?ns=" + ns
	return []string{"SKEIN_BUS=" + u, "SKEIN_BUS_PASSWORD=" + s.pw[ns+"-"+role]}
}

// TestRolesEndToEnd runs a real coordinator, runtime and submit, each
// with its own role's credentials, in two namespaces, and checks that a
// submitter of one namespace cannot get at a job of the other.
func TestRolesEndToEnd(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a", "b")
	var procs []*proc
	for _, ns := range []string{"a", "b"} {
		c := start(t, s.roleEnv(ns, "coordinator"), "coordinator", "--log-level", "debug")
		waitFor(t, c, "coordinator serving")
		procs = append(procs, c, start(t, s.roleEnv(ns, "runtime"), "runtime", "--slots", "2", "--log-level", "debug"))
	}
	// No program asks for more than its role's rights.
	defer func() {
		for _, p := range procs {
			if out := p.out.String(); strings.Contains(strings.ToLower(out), "permission") {
				t.Errorf("%s met a permission violation:\n%s", p.cmd.Path, out)
			}
		}
	}()
	for _, ns := range []string{"a", "b"} {
		code, out, errOut := run(t, s.roleEnv(ns, "submitter"), "submit", "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet", "--log-level", "debug")
		if code != 0 || strings.TrimSpace(out) != "[2,3,4]" {
			t.Fatalf("submit in %s: exit %d, stdout %q, stderr:\n%s", ns, code, out, errOut)
		}
		if strings.Contains(strings.ToLower(errOut), "permission") {
			t.Errorf("submit met a permission violation:\n%s", errOut)
		}
		code, out, errOut = run(t, s.roleEnv(ns, "submitter"), "submit", "mapreduce", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--reduce-function", "product", "--quiet", "--log-level", "debug")
		if code != 0 || strings.TrimSpace(out) != "24" {
			t.Fatalf("mapreduce in %s: exit %d, stdout %q, stderr:\n%s", ns, code, out, errOut)
		}
	}
	// A function sees none of the runtime's bus credentials (it got its
	// password from SKEIN_BUS_PASSWORD).
	code, out, errOut := run(t, s.roleEnv("a", "submitter"), "submit", "call", "--function", "env")
	if code != 0 || strings.Contains(out, s.pw["a-runtime"]) || strings.Contains(out, "SKEIN_BUS") {
		t.Errorf("a function's environment: exit %d, %q, %s; want no SKEIN_BUS* and no password", code, out, errOut)
	}
	// Cancelling a running job: purge, cancel notice, the runtime's
	// cancel listener, all within the roles' rights.
	code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "map", "--function", "sleep", "--iterdata", "[30,30,30,30,30,30]", "--no-wait")
	if code != 0 {
		t.Fatalf("submit --no-wait: exit %d:\n%s", code, errOut)
	}
	var sleepy string
	if err := json.Unmarshal([]byte(out), &sleepy); err != nil {
		t.Fatalf("job id %q: %v", out, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("the job never ran: %s", out)
		}
		code, out, _ = run(t, s.roleEnv("a", "submitter"), "submit", "status", sleepy)
		if code == 0 && strings.Contains(out, `"state":"running"`) && !strings.Contains(out, `"running":0`) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "cancel", sleepy); code != 0 && code != 6 {
		t.Errorf("cancel: exit %d %s %s", code, out, errOut)
	}
	if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "wait", sleepy); code != 6 {
		t.Errorf("wait on the cancelled job: exit %d, want 6 (cancelled): %s %s", code, out, errOut)
	}

	// A job of b, asked for by a's submitter.
	code, out, errOut = run(t, s.roleEnv("b", "submitter"), "submit", "map", "--function", "add", "--iterdata", "[5]", "--extra-params", `{"y":1}`, "--no-wait")
	if code != 0 {
		t.Fatalf("submit --no-wait in b: exit %d:\n%s", code, errOut)
	}
	var id string
	if err := json.Unmarshal([]byte(out), &id); err != nil || id == "" {
		t.Fatalf("job id %q: %v", out, err)
	}
	if code, out, errOut := run(t, s.roleEnv("b", "submitter"), "submit", "wait", id); code != 0 {
		t.Fatalf("wait in b: exit %d %s %s", code, out, errOut)
	}
	// Through its own namespace: a's coordinator knows no such job.
	for _, cmd := range []string{"result", "status", "cancel"} {
		code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", cmd, id)
		if code != 2 || !strings.Contains(errOut, "unknown job") {
			t.Errorf("a's submitter, %s of b's job: exit %d, stdout %q, stderr %q; want exit 2, unknown job", cmd, code, out, errOut)
		}
		t.Logf("a's submitter, %s of b's job through a: exit %d: %s", cmd, code, strings.TrimSpace(errOut))
	}
	// Through b's namespace with a's credentials: refused by the server.
	env := s.roleEnv("a", "submitter")
	env[0] = strings.Replace(env[0], "?ns=a", "?ns=b", 1)
	code, out, errOut = run(t, env, "submit", "result", id)
	if code != 5 || !strings.Contains(errOut, "permission denied") || strings.Contains(errOut, s.pw["a-submitter"]) {
		t.Errorf("a's submitter in namespace b: exit %d, stdout %q, stderr %q; want exit 5, permission denied, no password", code, out, errOut)
	}
	// And b's job still gives its result to b.
	code, out, _ = run(t, s.roleEnv("b", "submitter"), "submit", "result", id)
	if code != 0 || strings.TrimSpace(out) != "[6]" {
		t.Errorf("b's result: exit %d %q", code, out)
	}
}

// waitFor waits until a program's output contains s.
func waitFor(t *testing.T, p *proc, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", s, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcherRights: a watcher reads the job events of its namespace and
// can publish nothing: no API request, no event, no task, and through
// JetStream no replay of anything but job events.
func TestWatcherRights(t *testing.T) {
	s := startServer(t, "", "a", "b")
	s.createStreams(t, "a")
	s.createStreams(t, "b")
	events := s.msgs(t, "a", "EVENTS")
	c := s.connect(t, "a", "watcher")
	for _, subj := range []string{"a.rpc.api.status", "a.rpc.api.submit", "a.ev.jobevents.j1", "a.ev.task.j1", "a.ev.job.j1.end", "a.task.default.j1", "a.bc.cancel", "a.bc.progress.j1"} {
		if err := c.nc.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	for _, subj := range []string{"a.>", "a.bc.progress.*", "_INBOX.a.submitter.>", "_INBOX.a.coordinator.>", "a.rpc.api.status"} {
		if _, err := c.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	for _, subj := range []string{
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.task.*",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.job.*.spec",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x.a.ev.>",
		"$JS.API.CONSUMER.CREATE.A_EVENTS.x",
		"$JS.API.CONSUMER.CREATE.B_EVENTS.x.b.ev.jobevents.*",
		"$JS.API.CONSUMER.MSG.NEXT.A_TASKS.q-default",
		"$JS.API.STREAM.PURGE.A_EVENTS",
	} {
		if err := c.nc.PublishRequest(subj, "_INBOX.a.watcher.x", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.expectDenied(t, subj)
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.OrderedConsumer(ctx, "A_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"a.ev.jobevents.*"}}); err != nil {
		t.Fatalf("a watcher cannot follow its namespace's job events: %v", err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := s.msgs(t, "a", "EVENTS"); got != events {
		t.Errorf("events stream holds %d messages, want %d: a watcher's publish got through", got, events)
	}

	// End to end: a job run with the other roles' rights, its events
	// followed by `submit events` with the watcher's.
	co := start(t, s.roleEnv("a", "coordinator"), "coordinator", "--log-level", "debug")
	waitFor(t, co, "coordinator serving")
	rt := start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "2")
	w := start(t, s.roleEnv("a", "watcher"), "submit", "events", "--since", "60")
	code, out, errOut := run(t, s.roleEnv("a", "submitter"), "submit", "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet")
	if code != 0 || strings.TrimSpace(out) != "[2,3,4]" {
		t.Fatalf("submit: exit %d, %q, %s", code, out, errOut)
	}
	waitFor(t, w, `"type":"run.skein.job.done"`)
	for _, p := range []*proc{co, rt, w} {
		if strings.Contains(strings.ToLower(p.out.String()), "permission") {
			t.Errorf("%s met a permission violation:\n%s", p.cmd.Path, p.out.String())
		}
	}
	// The submitter may follow one job's events too.
	var id string
	code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "map", "--function", "add", "--iterdata", "[1]", "--extra-params", `{"y":1}`, "--no-wait")
	if code != 0 || json.Unmarshal([]byte(out), &id) != nil {
		t.Fatalf("submit --no-wait: exit %d, %q, %s", code, out, errOut)
	}
	if code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "events", id); code != 0 || !strings.Contains(out, `"type":"run.skein.job.done"`) {
		t.Fatalf("submit events %s as the submitter: exit %d, %q, %s", id, code, out, errOut)
	}
}
