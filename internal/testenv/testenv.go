// Package testenv finds the outside services tests run against (brokers,
// S3, a Python environment). scripts/test.sh starts them and exports their
// addresses; a test that needs one calls Require. Under CI (CI=true) a
// missing service fails the test; elsewhere it skips with a message that
// says how to get it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Variables exported by scripts/test.sh.
const (
	NATSURL       = "SKEIN_TEST_NATS_URL"        // a nats-server process with JetStream, oldest supported version (Debian's)
	NATSURLNewest = "SKEIN_TEST_NATS_URL_NEWEST" // the same, newest supported version (built from go.mod's nats-server module)
	NATSServers   = "SKEIN_TEST_NATS_SERVERS"    // both nats-server binaries, oldest first, ':'-separated, for tests that start and kill their own
	AMQPURL       = "SKEIN_TEST_AMQP_URL"        // a rabbitmq-server process
	AMQPCtl       = "SKEIN_TEST_AMQP_CTL"        // "stop" / "start" command for the broker (restart tests)
	S3Endpoint    = "SKEIN_TEST_S3_ENDPOINT"     // versitygw
	S3Access      = "SKEIN_TEST_S3_ACCESS"
	S3Secret      = "SKEIN_TEST_S3_SECRET"
	Venv          = "SKEIN_TEST_VENV" // a Python virtual environment (Airflow, msgpack)
	Python        = "SKEIN_TEST_PYTHON"
	Chromium      = "SKEIN_TEST_CHROMIUM" // headless Chromium (plot rendering tests)
)

// CI reports whether the tests run under CI, where nothing may be skipped
// for want of a service.
func CI() bool { return os.Getenv("CI") == "true" || os.Getenv("CI") == "1" }

// Require returns the value of the environment variable name, or fails
// (under CI) or skips (elsewhere) the test when it is unset.
func Require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if CI() {
		t.Fatalf("%s is not set: scripts/test.sh starts this service; under CI a missing service is a failure", name)
	}
	t.Skipf("%s is not set: run the tests through scripts/test.sh (make test) to start this service", name)
	return ""
}

// PrivateRabbitMQ starts a RabbitMQ node of the test's own — its own node
// name, ports, epmd, cookie and data directory — with
// scripts/services/rabbitmq.sh, for a test that stops and starts its
// broker: the shared node serves other packages' tests at the same time.
// It returns the node's AMQP URL and a command line that takes
// "stop-broker" or "start-broker". The node is stopped and removed when
// the test ends. It needs RabbitMQ installed (AMQPCtl set by
// scripts/test.sh).
func PrivateRabbitMQ(t testing.TB) (url, ctl string) {
	t.Helper()
	Require(t, AMQPCtl)
	script := filepath.Join(repoRoot(t), "scripts", "services", "rabbitmq.sh")
	dir, err := os.MkdirTemp("", "skein-rabbitmq-")
	if err != nil {
		t.Fatal(err)
	}
	node := fmt.Sprintf("skeinp%d%d@localhost", os.Getpid(), time.Now().UnixNano()%1e6)
	env := append(os.Environ(), "SKEIN_RABBITMQ_DIR="+dir, "SKEIN_RABBITMQ_NODE="+node)
	run := func(verb string) ([]byte, error) {
		cmd := exec.Command("bash", script, verb)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("rabbitmq.sh %s: %w\n%s", verb, err, stderr.String())
		}
		return out, nil
	}
	t.Cleanup(func() {
		if _, err := run("stop"); err != nil {
			t.Logf("stopping the private RabbitMQ node: %v", err)
		}
		os.RemoveAll(dir)
	})
	out, err := run("start")
	if err != nil {
		t.Fatalf("starting a private RabbitMQ node: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "export "+AMQPURL+"="); ok {
			url = strings.Trim(v, `"'`)
		}
	}
	if url == "" {
		t.Fatalf("rabbitmq.sh start printed no %s:\n%s", AMQPURL, out)
	}
	return url, fmt.Sprintf("env SKEIN_RABBITMQ_DIR=%s SKEIN_RABBITMQ_NODE=%s bash %s", dir, node, script)
}

// repoRoot is the directory holding go.mod, from the test's directory up.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
