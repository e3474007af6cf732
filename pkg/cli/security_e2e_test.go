package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/wire"
)

// Secrets of the runtime's environment in these tests: none may reach a
// function.
const (
	busPassword = "bus-pw-9f3a71c2"
	accessKey   = "AKIA-access-5d1e"
	secretKey   = "secret-key-77b0c4"
	otherSecret = "other-secret-2c8d"
)

const envModule = `import os

def environ():
    return dict(os.environ)

def uid():
    return os.getuid()
`

// withPassword puts user skein and busPassword into a nats:// URL (the
// shared test server has no authentication, so it accepts them).
func withPassword(t *testing.T, url string) string {
	t.Helper()
	if !strings.HasPrefix(url, "nats://") {
		t.Fatalf("want a nats:// URL, got %q", url)
	}
	return "nats://skein:" + busPassword + "@" + strings.TrimPrefix(url, "nats://")
}

// startRuntime starts a coordinator (on busURL) and one runtime whose
// environment holds the bus URL with its password and storage keys, and
// waits until the runtime pulls.
func startSecretRuntime(t *testing.T, busURL string, store string, args ...string) *proc {
	t.Helper()
	env := []string{"SKEIN_STORAGE_LOCAL_ROOT=" + store}
	clusterEnv(t, busURL, 0, env)
	renv := append(env, "SKEIN_BUS="+busURL, "SKEIN_STORAGE_ACCESS_KEY="+accessKey,
		"SKEIN_STORAGE_SECRET_KEY="+secretKey, "AWS_SECRET_ACCESS_KEY="+otherSecret,
		"PASSED_VAR=passed-value")
	rt := startEnv(t, renv, "runtime", append([]string{"--slots", "2", "--log-level", "debug"}, args...)...)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(rt.out.String(), "runtime started") {
		if time.Now().After(deadline) {
			t.Fatalf("runtime did not start:\n%s", rt.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rt
}

// checkNoSecret fails when the text of a function's environment shows a
// secret of the runtime or a SKEIN_ setting.
func checkNoSecret(t *testing.T, what, text string) {
	t.Helper()
	var seen []string
	for _, s := range []string{busPassword, accessKey, secretKey, otherSecret, "SKEIN_BUS", "SKEIN_STORAGE", "AWS_SECRET"} {
		if strings.Contains(text, s) {
			seen = append(seen, s)
		}
	}
	if len(seen) > 0 {
		t.Errorf("%s shows %q of the runtime's environment:\n%s", what, seen, text)
	}
}

// TestFunctionsSeeNoSecrets: a cmd:, a py: and a Go function each return
// their whole environment; none shows the runtime's bus password, storage
// keys or any variable it was not told to pass, while the job's --env and
// the --pass-env variable are there.
func TestFunctionsSeeNoSecrets(t *testing.T) {
	url := withPassword(t, namespaced(t, testenv.Require(t, testenv.NATSURL)))
	dir := t.TempDir()
	module := filepath.Join(dir, "envdump.py")
	if err := os.WriteFile(module, []byte(envModule), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	startSecretRuntime(t, url, store, "--hosts", "go,py,cmd", "--pass-env", "PASSED_VAR")
	senv := []string{"SKEIN_STORAGE_LOCAL_ROOT=" + store}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"cmd", []string{"--function", "cmd:@lines env"}},
		{"py", []string{"--function", "py:envdump:environ", "--include-modules", module}},
		{"go", []string{"--function", "env"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := submitEnv(t, senv, append([]string{"call", "--bus", url, "--env", "JOB_VAR=job-value"}, c.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			checkNoSecret(t, c.name+" function", out)
			for _, want := range []string{"JOB_VAR", "job-value", "PASSED_VAR", "passed-value", "PATH"} {
				if !strings.Contains(out, want) {
					t.Errorf("the %s function's environment lacks %s:\n%s", c.name, want, out)
				}
			}
		})
	}
}

// TestForgedCommandRefused: a bare bus client publishes a cmd: task on the
// pool of a runtime started without cmd in --hosts. The runtime refuses
// it, logs why, and never runs the command; a job asking for cmd: fails
// at its first attempt with a message naming the flag.
func TestForgedCommandRefused(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) { forgedCommandRefused(t, namespaced(t, testenv.Require(t, bk.env))) })
	}
}

func forgedCommandRefused(t *testing.T, url string) {
	rt := startSecretRuntime(t, url, filepath.Join(t.TempDir(), "store"))
	marker := filepath.Join(t.TempDir(), "pwned")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := dial.Open(ctx, url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	task := wire.Task{Job: "jforged1", Index: 0, Attempt: 1, Kind: wire.TaskMap,
		Function: fmt.Sprintf("cmd:sh -c 'id > %s'", marker)}
	data, err := wire.Encode(wire.KindTask, task)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Enqueue(ctx, "default", bus.Message{Data: data}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(rt.out.String(), "jforged1") {
		if time.Now().After(deadline) {
			t.Fatalf("the runtime did not log the forged task:\n%s", rt.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(rt.out.String(), "\n") {
		if strings.Contains(l, "jforged1") {
			line = l
		}
	}
	for _, want := range []string{"refusing a task", "reason=", "cmd: functions are disabled", "--hosts go,py,cmd"} {
		if !strings.Contains(line, want) {
			t.Errorf("the refusal log line lacks %q: %s", want, line)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the forged command ran: %v", err)
	}

	_, errOut, code := submit(t, "call", "--bus", url, "--function", "cmd:true", "--retries", "3")
	if code != cli.ExitJobFailed || !strings.Contains(errOut, "cmd: functions are disabled") || !strings.Contains(errOut, "runtime --hosts go,py,cmd") {
		t.Fatalf("a cmd: job on a runtime without cmd: exit %d, want %d with the flag named; stderr:\n%s", code, cli.ExitJobFailed, errOut)
	}
	if n := strings.Count(rt.out.String(), "function=cmd:true"); n != 1 {
		t.Fatalf("the refused task ran %d times, want once (the refusal is final):\n%s", n, rt.out.String())
	}
}

// TestFunctionsRunUnprivileged: a runtime started as root runs cmd: and
// py: functions as nobody (the default --run-as); one started as another
// user runs them as itself.
func TestFunctionsRunUnprivileged(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	dir := t.TempDir()
	module := filepath.Join(dir, "envdump.py")
	if err := os.WriteFile(module, []byte(envModule), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	startSecretRuntime(t, url, store, "--hosts", "go,py,cmd")
	senv := []string{"SKEIN_STORAGE_LOCAL_ROOT=" + store}
	wantUID, wantName := os.Geteuid(), ""
	if wantUID == 0 {
		wantUID, wantName = 65534, "nobody"
	}
	out, errOut, code := submitEnv(t, senv, "call", "--bus", url, "--function", "cmd:@text sh -c 'id; touch \"$TMPDIR/x\" && echo tmp-writable'")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var text string
	if err := json.Unmarshal([]byte(out), &text); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if !strings.Contains(text, "uid="+strconv.Itoa(wantUID)+"("+wantName) && !(wantName == "" && strings.Contains(text, "uid="+strconv.Itoa(wantUID))) {
		t.Fatalf("cmd:sh -c id printed %q, want uid %d %s", text, wantUID, wantName)
	}
	if wantName == "nobody" && (strings.Contains(text, "(root)") || strings.Contains(text, "groups=0")) {
		t.Fatalf("the function kept root's groups: %q", text)
	}
	if !strings.Contains(text, "tmp-writable") {
		t.Fatalf("the function cannot write its TMPDIR: %q", text)
	}
	// A py: function with shipped modules: the interpreter, its script
	// and the modules must all be readable by the user.
	out, errOut, code = submitEnv(t, senv, "call", "--bus", url, "--function", "py:envdump:uid", "--include-modules", module)
	if code != 0 || strings.TrimSpace(out) != strconv.Itoa(wantUID) {
		t.Fatalf("py: function's uid: exit %d, %q, want %d; %s", code, out, wantUID, errOut)
	}
}

// TestRuntimeEnvironNotReadable: a function running as the runtime's own
// user (a runtime not started as root, as in the container images)
// cannot read the runtime's environment through /proc/PPID/environ. As
// root, the test starts the runtime as nobody to get there.
func TestRuntimeEnvironNotReadable(t *testing.T) {
	url := withPassword(t, namespaced(t, testenv.Require(t, testenv.NATSURL)))
	clusterEnv(t, url, 0, nil)
	rt := &proc{cmd: exec.Command(filepath.Join(binDir, "runtime"), "--hosts", "go,cmd", "--log-level", "debug"), out: &testenv.Buffer{}}
	rt.cmd.Env = append(os.Environ(), "SKEIN_BUS="+url, "SKEIN_STORAGE_ACCESS_KEY="+accessKey, "SKEIN_STORAGE_SECRET_KEY="+secretKey)
	rt.cmd.Stdout, rt.cmd.Stderr, rt.cmd.Dir = rt.out, rt.out, "/"
	if os.Geteuid() == 0 {
		if err := os.Chmod(binDir, 0o755); err != nil {
			t.Fatal(err)
		}
		rt.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	if err := rt.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rt.cmd.Process.Signal(syscall.SIGTERM)
		_ = rt.cmd.Wait()
		if t.Failed() {
			t.Logf("runtime output:\n%s", rt.out.String())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(rt.out.String(), "runtime started"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) || rt.cmd.ProcessState != nil {
			t.Fatalf("the runtime did not start:\n%s", rt.out.String())
		}
	}
	out, errOut, code := submit(t, "call", "--bus", url, "--function",
		`cmd:@text sh -c 'id -u; if cat /proc/$PPID/environ > /dev/null 2>&1; then echo readable; tr "\000" " " < /proc/$PPID/environ; else echo unreadable; fi'`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	checkNoSecret(t, "/proc/PPID/environ of the runtime", out)
	if !strings.Contains(out, "unreadable") {
		t.Fatalf("the function read the runtime's environment: %s", out)
	}
}

// TestFuncOptionsUsage: bad --hosts, --pass-env or --run-as values stop
// the runtime at start with exit 2 and a message naming the problem.
func TestFuncOptionsUsage(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"without go", []string{"--hosts", "py,cmd"}, nil, "go is always on"},
		{"unknown host", []string{"--hosts", "go,perl"}, nil, `unknown host "perl"`},
		{"unknown host in env", nil, []string{"SKEIN_HOSTS=go,java"}, `unknown host "java"`},
		{"pass a runtime setting", []string{"--pass-env", "SKEIN_BUS"}, nil, "SKEIN_BUS is one of the runtime's own settings"},
		{"unknown user", []string{"--run-as", "no-such-user-x"}, nil, "no-such-user-x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, "runtime"), append([]string{"--bus", testenv.Require(t, testenv.NATSURL)}, c.args...)...)
			cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, c.env...)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != cli.ExitUsage || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, want %d naming %q:\n%s", err, cli.ExitUsage, c.want, out)
			}
		})
	}
}
