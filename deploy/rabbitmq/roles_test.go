package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	rbus "github.com/skeinrun/skein/bus/rabbitmq"
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

// ctlCommand is the rabbitmqctl of the shared test broker: the services
// script's "ctl" command (this tree's copy of the script, which has it).
func ctlCommand(t *testing.T) string {
	t.Helper()
	c := testenv.Require(t, testenv.AMQPCtl)
	fields := strings.Fields(c)
	for i, f := range fields {
		if strings.HasSuffix(f, "/rabbitmq.sh") {
			own, err := filepath.Abs("../../scripts/services/rabbitmq.sh")
			if err != nil {
				t.Fatal(err)
			}
			fields[i] = own
		}
	}
	return strings.Join(fields, " ") + " ctl"
}

// tenant is a vhost and namespace made by skein-users.sh on the shared
// broker, removed at the end of the test.
type tenant struct {
	vhost, ns string
	host      string // host:port of the broker
	pw        map[string]string
}

func makeTenant(t *testing.T, name string, args ...string) *tenant {
	t.Helper()
	raw := testenv.Require(t, testenv.AMQPURL)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	id := rand.IntN(1e6)
	tn := &tenant{vhost: fmt.Sprintf("skein-roles-%s-%d", name, id), ns: fmt.Sprintf("r%s%d", name, id), host: u.Host, pw: map[string]string{}}
	ctl := ctlCommand(t)
	cmd := exec.Command("sh", append(append([]string{"skein-users.sh"}, args...), tn.vhost, tn.ns)...)
	cmd.Env = append(os.Environ(), "RABBITMQCTL="+ctl)
	V := strings.ToUpper(strings.ReplaceAll(tn.ns, "-", "_"))
	for _, role := range []string{"submitter", "coordinator", "runtime", "watcher", "notifier"} {
		pw := fmt.Sprintf("pw-%s-%s-%d", tn.ns, role, rand.IntN(1e9))
		tn.pw[role] = pw
		cmd.Env = append(cmd.Env, "SKEIN_"+V+"_"+strings.ToUpper(role)+"_PASSWORD="+pw)
	}
	t.Cleanup(func() {
		sh := func(args ...string) { _ = exec.Command("sh", "-c", ctl+" "+strings.Join(args, " ")).Run() }
		sh("delete_vhost", tn.vhost)
		for _, role := range []string{"submitter", "coordinator", "runtime", "watcher", "notifier"} {
			sh("delete_user", tn.ns+"-"+role)
		}
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("skein-users.sh: %v\n%s", err, out)
	}
	for _, pw := range tn.pw {
		if strings.Contains(string(out), pw) {
			t.Fatalf("skein-users.sh printed a password:\n%s", out)
		}
	}
	return tn
}

// url is the bus URL of a role, without its password.
func (tn *tenant) url(role string) string {
	return fmt.Sprintf("amqp://%s-%s@%s/%s?ns=%s", tn.ns, role, tn.host, url.PathEscape(tn.vhost), tn.ns)
}

func (tn *tenant) env(role string) []string {
	return []string{"SKEIN_BUS=" + tn.url(role), "SKEIN_BUS_PASSWORD=" + tn.pw[role]}
}

// dial connects with amqp091 as a role of the tenant.
func (tn *tenant) dial(t *testing.T, role string) *amqp.Connection {
	t.Helper()
	u := fmt.Sprintf("amqp://%s-%s:%s@%s/%s", tn.ns, role, tn.pw[role], tn.host, url.PathEscape(tn.vhost))
	c, err := amqp.Dial(u)
	if err != nil {
		t.Fatalf("dial as %s: %v", role, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// refused runs op on a fresh channel and reports whether the broker
// refused it (403 ACCESS_REFUSED); a publish is confirmed first, so that
// an accepted one is known to be accepted.
func refused(t *testing.T, c *amqp.Connection, op func(ch *amqp.Channel) error) bool {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	err = op(ch)
	var aerr *amqp.Error
	if errors.As(err, &aerr) {
		return aerr.Code == amqp.AccessRefused
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	select {
	case e := <-closed:
		return e != nil && e.Code == amqp.AccessRefused
	case <-time.After(2 * time.Second):
		return false
	}
}

func publish(exchange, key string) func(ch *amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		conf, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, amqp.Publishing{Body: []byte("forged")})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// A refused publish closes the channel (refused looks at that);
		// WaitContext then reports it unconfirmed.
		_, _ = conf.WaitContext(ctx)
		return nil
	}
}

func bind(exchange, key string) func(ch *amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			return err
		}
		return ch.QueueBind(q.Name, key, exchange, false, nil)
	}
}

func bindQueue(queue, exchange string) func(ch *amqp.Channel) error {
	return func(ch *amqp.Channel) error { return ch.QueueBind(queue, queue, exchange, false, nil) }
}

func consume(queue string) func(ch *amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		_, err := ch.Consume(queue, "", false, false, false, false, nil)
		return err
	}
}

// TestRoleRights checks, on the shared broker configured with
// skein-users.sh, what each role may not do.
func TestRoleRights(t *testing.T) {
	a, b := makeTenant(t, "a"), makeTenant(t, "b")
	// The coordinators create their tenants' objects.
	c := start(t, a.env("coordinator"), "coordinator")
	waitFor(t, c, "coordinator serving")
	c = start(t, b.env("coordinator"), "coordinator")
	waitFor(t, c, "coordinator serving")

	sub := a.dial(t, "submitter")
	task := a.ns + ".default"
	for name, op := range map[string]func(*amqp.Channel) error{
		"publish a task (default exchange)":   publish("", task),
		"publish a task event":                publish(a.ns+".events", "task.j1"),
		"publish an end record":               publish(a.ns+".events", "job.j1.end"),
		"publish a cancel notice":             publish(a.ns+".broadcast", "cancel"),
		"publish into the API queue directly": publish("", a.ns+".rpc.api.submit"),
		"consume the task queue":              consume(task),
		"consume the API queue":               consume(a.ns + ".rpc.api.submit"),
		"listen to cancel notices":            bind(a.ns+".broadcast", "cancel"),
		"listen to every broadcast":           bind(a.ns+".broadcast", "#"),
		"bind to the event exchange":          bind(a.ns+".events", "#"),
		"delete the event stream": func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(a.ns+".events", false, false, false)
			return err
		},
		"declare a queue named like a work queue": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(a.ns+".gpu", true, false, false, false, nil)
			return err
		},
	} {
		if !refused(t, sub, op) {
			t.Errorf("a submitter could %s", name)
		}
	}
	// What it needs is allowed: progress notices, the event stream, API
	// requests.
	for name, op := range map[string]func(*amqp.Channel) error{
		"listen to progress":    bind(a.ns+".broadcast", "progress.j1"),
		"publish a request":     publish(a.ns+".rpc", a.ns+".rpc.api.status"),
		"read the event stream": func(ch *amqp.Channel) error { _ = ch.Qos(10, 0, false); return consume(a.ns + ".events")(ch) },
	} {
		if refused(t, sub, op) {
			t.Errorf("a submitter cannot %s", name)
		}
	}
	// Nothing of tenant b: its vhost refuses a's users.
	u := fmt.Sprintf("amqp://%s-submitter:%s@%s/%s", a.ns, a.pw["submitter"], b.host, url.PathEscape(b.vhost))
	if conn, err := amqp.Dial(u); err == nil {
		conn.Close()
		t.Errorf("a's submitter could connect to b's vhost")
	}

	rt := a.dial(t, "runtime")
	for name, op := range map[string]func(*amqp.Channel) error{
		"publish an end record":   publish(a.ns+".events", "job.j1.end"),
		"publish a job spec":      publish(a.ns+".events", "job.j1.spec"),
		"publish a reducer feed":  publish(a.ns+".events", "feed.j1.0"),
		"publish a cancel notice": publish(a.ns+".broadcast", "cancel"),
		"publish a request":       publish(a.ns+".rpc", a.ns+".rpc.api.submit"),
		// The default exchange reaches every queue of the vhost by its
		// name: the API's included.
		"publish into the API queue directly":        publish("", a.ns+".rpc.api.submit"),
		"publish a task (default exchange)":          publish("", task),
		"bind the API queue to the requeue exchange": bindQueue(a.ns+".rpc.api.submit", a.ns+".requeue"),
		"declare another pool's delay queue": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(a.ns+".delay."+a.ns+".gpu.1000ms", true, false, false, false, nil)
			return err
		},
		"consume the API queue": consume(a.ns + ".rpc.api.submit"),
		"listen to progress":    bind(a.ns+".broadcast", "progress.*"),
		"take another pool's tasks": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(a.ns+".gpu", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
			return err
		},
	} {
		if !refused(t, rt, op) {
			t.Errorf("a runtime could %s", name)
		}
	}
	if refused(t, rt, publish(a.ns+".events", "task.j1")) {
		t.Errorf("a runtime cannot publish a task event")
	}
}

// TestRuntimeHandsBackUnderRoles: with the runtime's rights alone (no
// write on the default exchange), a runtime's bus hands a task back with a
// delay and dead-letters it, through the exchange "<ns>.requeue".
func TestRuntimeHandsBackUnderRoles(t *testing.T) {
	a := makeTenant(t, "h")
	c := start(t, a.env("coordinator"), "coordinator")
	waitFor(t, c, "coordinator serving")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(role string) *rbus.Bus {
		u := fmt.Sprintf("amqp://%s-%s:%s@%s/%s", a.ns, role, a.pw[role], a.host, url.PathEscape(a.vhost))
		b, err := rbus.Connect(ctx, u, rbus.Options{Prefix: a.ns})
		if err != nil {
			t.Fatalf("connect as %s: %v", role, err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	co, rt := connect("coordinator"), connect("runtime")
	if err := co.Enqueue(ctx, "default", bus.Message{Data: []byte("task")}); err != nil {
		t.Fatal(err)
	}
	c2, err := rt.Consume(ctx, "default", bus.QueueOptions{Prefetch: 1, Lease: time.Minute})
	if err != nil {
		t.Fatalf("the runtime consumes its pool: %v", err)
	}
	next := func() bus.Delivery {
		select {
		case d := <-c2:
			return d
		case <-ctx.Done():
			t.Fatal("no delivery")
			return nil
		}
	}
	if err := next().Nak(ctx, 200*time.Millisecond); err != nil {
		t.Fatalf("the runtime naks with a delay: %v", err)
	}
	if err := next().Term(ctx, "given up"); err != nil {
		t.Fatalf("the runtime dead-letters: %v", err)
	}
	var dls []rbus.DeadLetter
	for deadline := time.Now().Add(10 * time.Second); len(dls) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if dls, err = co.DeadLetters(ctx, "default", 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(dls) != 1 || dls[0].Reason != "given up" {
		t.Fatalf("dead letters %+v; want the task, given up", dls)
	}
}

// TestRolesEndToEnd runs a real coordinator, runtime and submit in two
// tenants, each with its role's credentials (passwords from the
// environment), and checks that a's submitter cannot get b's job.
func TestRolesEndToEnd(t *testing.T) {
	a, b := makeTenant(t, "a"), makeTenant(t, "b")
	var procs []*proc
	for _, tn := range []*tenant{a, b} {
		c := start(t, tn.env("coordinator"), "coordinator")
		waitFor(t, c, "coordinator serving")
		procs = append(procs, c, start(t, tn.env("runtime"), "runtime", "--slots", "2"))
	}
	defer func() {
		for _, p := range procs {
			if wasRefused(p.out.String()) {
				t.Errorf("%s was refused something:\n%s", p.cmd.Path, p.out.String())
			}
		}
	}()
	for _, tn := range []*tenant{a, b} {
		code, out, errOut := run(t, tn.env("submitter"), "submit", "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet")
		if code != 0 || strings.TrimSpace(out) != "[2,3,4]" {
			t.Fatalf("submit in %s: exit %d, stdout %q, stderr:\n%s", tn.vhost, code, out, errOut)
		}
		code, out, errOut = run(t, tn.env("submitter"), "submit", "mapreduce", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--reduce-function", "product", "--quiet")
		if code != 0 || strings.TrimSpace(out) != "24" {
			t.Fatalf("mapreduce in %s: exit %d, stdout %q, stderr:\n%s", tn.vhost, code, out, errOut)
		}
	}
	// Cancelling a running job: purge, cancel notice, the runtime's
	// cancel listener, all within the roles' rights.
	code, out, errOut := run(t, a.env("submitter"), "submit", "map", "--function", "sleep", "--iterdata", "[30,30,30,30,30,30]", "--no-wait")
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
		code, out, _ = run(t, a.env("submitter"), "submit", "status", sleepy)
		if code == 0 && strings.Contains(out, `"state":"running"`) && !strings.Contains(out, `"running":0`) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errOut = run(t, a.env("submitter"), "submit", "cancel", sleepy); code != 0 && code != 6 {
		t.Errorf("cancel: exit %d %s %s", code, out, errOut)
	}
	if code, out, errOut = run(t, a.env("submitter"), "submit", "wait", sleepy); code != 6 {
		t.Errorf("wait on the cancelled job: exit %d, want 6 (cancelled): %s %s", code, out, errOut)
	}

	code, out, errOut = run(t, b.env("submitter"), "submit", "map", "--function", "add", "--iterdata", "[5]", "--extra-params", `{"y":1}`, "--no-wait")
	if code != 0 {
		t.Fatalf("submit --no-wait in b: exit %d:\n%s", code, errOut)
	}
	var id string
	if err := json.Unmarshal([]byte(out), &id); err != nil || id == "" {
		t.Fatalf("job id %q: %v", out, err)
	}
	if code, out, errOut := run(t, b.env("submitter"), "submit", "wait", id); code != 0 {
		t.Fatalf("wait in b: exit %d %s %s", code, out, errOut)
	}
	for _, cmd := range []string{"result", "status", "cancel"} {
		code, out, errOut = run(t, a.env("submitter"), "submit", cmd, id)
		if code == 0 || !strings.Contains(errOut, "unknown job") {
			t.Errorf("a's submitter, %s of b's job: exit %d, stdout %q, stderr %q", cmd, code, out, errOut)
		}
	}
	// a's credentials on b's vhost: refused, exit 5, no password shown.
	env := []string{"SKEIN_BUS=" + strings.Replace(a.url("submitter"), "/"+url.PathEscape(a.vhost), "/"+url.PathEscape(b.vhost), 1), "SKEIN_BUS_PASSWORD=" + a.pw["submitter"]}
	code, _, errOut = run(t, env, "submit", "result", id)
	if code != 5 || strings.Contains(errOut, a.pw["submitter"]) {
		t.Errorf("a's submitter on b's vhost: exit %d, stderr %q; want exit 5 without the password", code, errOut)
	}
	code, out, _ = run(t, b.env("submitter"), "submit", "result", id)
	if code != 0 || strings.TrimSpace(out) != "[6]" {
		t.Errorf("b's result: exit %d %q", code, out)
	}
}

// TestWrongPassword: a wrong AMQP password exits 5 and shows nowhere.
func TestWrongPassword(t *testing.T) {
	a := makeTenant(t, "w")
	code, _, errOut := run(t, []string{"SKEIN_BUS=" + a.url("submitter"), "SKEIN_BUS_PASSWORD=wrong-secret-44"}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, "wrong-secret-44") || !strings.Contains(errOut, "credentials") {
		t.Errorf("wrong password: exit %d, stderr %q; want exit 5 naming the credentials, without the password", code, errOut)
	}
	u := strings.Replace(a.url("submitter"), "-submitter@", "-submitter:url-secret-45@", 1)
	code, _, errOut = run(t, []string{"SKEIN_BUS=" + u}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, "url-secret-45") {
		t.Errorf("wrong password in the URL: exit %d, stderr %q; want exit 5 without the password", code, errOut)
	}
}

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

func run(t *testing.T, env []string, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr testenv.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
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

func waitFor(t *testing.T, p *proc, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", s, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRuntimeBeforeCoordinator: a runtime may not declare the exchanges
// and the event stream; started before any coordinator, it exits 5 and
// says what to do.
func TestRuntimeBeforeCoordinator(t *testing.T) {
	a := makeTenant(t, "e")
	code, _, errOut := run(t, a.env("runtime"), "runtime", "--max-tasks", "1")
	if code != 5 || !strings.Contains(errOut, "start the coordinator first") {
		t.Errorf("runtime before the coordinator: exit %d, stderr %q; want exit 5 saying to start the coordinator", code, errOut)
	}
}

// TestCoordinatorRestartUnderRoles: a coordinator killed mid-job and
// started again takes the job up (it replays the job log and marks the
// job's events) with the coordinator's rights alone.
func TestCoordinatorRestartUnderRoles(t *testing.T) {
	a := makeTenant(t, "c")
	c1 := start(t, a.env("coordinator"), "coordinator")
	waitFor(t, c1, "coordinator serving")
	start(t, a.env("runtime"), "runtime", "--slots", "2")
	code, out, errOut := run(t, a.env("submitter"), "submit", "map", "--function", "sleep", "--iterdata", "[1,1,1,1]", "--no-wait")
	if code != 0 {
		t.Fatalf("submit: exit %d %s", code, errOut)
	}
	id := strings.Trim(strings.TrimSpace(out), `"`)
	if err := c1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c2 := start(t, a.env("coordinator"), "coordinator")
	waitFor(t, c2, "coordinator serving")
	if code, out, errOut = run(t, a.env("submitter"), "submit", "wait", id); code != 0 {
		t.Fatalf("wait after the restart: exit %d %s %s", code, out, errOut)
	}
	code, out, errOut = run(t, a.env("submitter"), "submit", "result", id)
	if code != 0 || strings.TrimSpace(out) != "[1,1,1,1]" {
		t.Errorf("result after the restart: exit %d, %q, %s", code, out, errOut)
	}
	if !strings.Contains(c2.out.String(), "took up unfinished jobs") {
		t.Errorf("the restarted coordinator took up no job:\n%s", c2.out.String())
	}
	if wasRefused(c2.out.String()) {
		t.Errorf("the restarted coordinator was refused something:\n%s", c2.out.String())
	}
}

// TestWatcherRights: a watcher reads the event stream (the job events
// `submit events` follows) and can publish nothing, bind nothing, take no
// queue; end to end, it follows a job run with the other roles' rights.
func TestWatcherRights(t *testing.T) {
	a := makeTenant(t, "w")
	co := start(t, a.env("coordinator"), "coordinator")
	waitFor(t, co, "coordinator serving")
	rt := start(t, a.env("runtime"), "runtime", "--slots", "2")

	w := a.dial(t, "watcher")
	for name, op := range map[string]func(*amqp.Channel) error{
		"publish a job event":        publish(a.ns+".events", "jobevents.j1"),
		"publish a task event":       publish(a.ns+".events", "task.j1"),
		"publish an end record":      publish(a.ns+".events", "job.j1.end"),
		"publish a request":          publish(a.ns+".rpc", a.ns+".rpc.api.status"),
		"publish a cancel notice":    publish(a.ns+".broadcast", "cancel"),
		"publish a task":             publish("", a.ns+".default"),
		"consume the task queue":     consume(a.ns + ".default"),
		"consume the API queue":      consume(a.ns + ".rpc.api.submit"),
		"listen to progress":         bind(a.ns+".broadcast", "progress.*"),
		"bind to the event exchange": bind(a.ns+".events", "#"),
	} {
		if !refused(t, w, op) {
			t.Errorf("a watcher could %s", name)
		}
	}
	if refused(t, w, func(ch *amqp.Channel) error { _ = ch.Qos(10, 0, false); return consume(a.ns + ".events")(ch) }) {
		t.Errorf("a watcher cannot read the event stream")
	}

	follow := start(t, a.env("watcher"), "submit", "events", "--since", "60")
	code, out, errOut := run(t, a.env("submitter"), "submit", "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet")
	if code != 0 || strings.TrimSpace(out) != "[2,3,4]" {
		t.Fatalf("submit: exit %d, %q, %s", code, out, errOut)
	}
	waitFor(t, follow, `"type":"run.skein.job.done"`)
	for _, p := range []*proc{co, rt, follow} {
		if wasRefused(p.out.String()) {
			t.Errorf("%s was refused something:\n%s", p.cmd.Path, p.out.String())
		}
	}
}

// wasRefused reports whether a process's log shows the broker refusing it
// something: AMQP's ACCESS_REFUSED, reply code 403. The code is matched only
// as the client library prints it ("Exception (403)"), never as a bare
// number, which a log line's timestamp can contain (".403Z").
func wasRefused(out string) bool {
	o := strings.ToLower(out)
	return strings.Contains(o, "access_refused") || strings.Contains(o, "access refused") || strings.Contains(o, "exception (403)")
}
