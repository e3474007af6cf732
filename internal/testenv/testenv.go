// Package testenv finds the outside services tests run against (brokers,
// S3, a Python environment). scripts/test.sh starts them and exports their
// addresses; a test that needs one calls Require. Under CI (CI=true) a
// missing service fails the test; elsewhere it skips with a message that
// says how to get it.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	Chromium      = "SKEIN_TEST_CHROMIUM" // headless Chromium (plot rendering and dashboard tests)

	// Clustered brokers (scripts/services/nats-cluster.sh and
	// rabbitmq-cluster.sh): three nodes each on loopback. The URL lists
	// are comma-separated, node 1 first; a CTL command takes
	// "kill-node N", "stop-node N" and "start-node N" (N = 1 to 3).
	NATSCluster        = "SKEIN_TEST_NATS_CLUSTER"         // the nats-server nodes' client URLs (JetStream, newest supported version)
	NATSClusterMonitor = "SKEIN_TEST_NATS_CLUSTER_MONITOR" // their monitoring URLs, same order (/connz, /jsz)
	NATSClusterCtl     = "SKEIN_TEST_NATS_CLUSTER_CTL"
	AMQPCluster        = "SKEIN_TEST_AMQP_CLUSTER" // the RabbitMQ nodes' AMQP URLs (quorum queues, streams)
	AMQPClusterCtl     = "SKEIN_TEST_AMQP_CLUSTER_CTL"
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

// Cluster is one of the 3-node broker clusters scripts/test.sh starts.
// The nodes are shared by every test of the run that needs a cluster: a
// test that kills a node brings it back before it ends (KillNode does so
// in a cleanup), and waits for it to be back.
type Cluster struct {
	// URLs of the nodes, node 1 first.
	URLs []string
	// Monitor holds the nodes' NATS monitoring URLs, same order (nil for
	// RabbitMQ).
	Monitor []string
	ctl     string
}

// List is the nodes' URLs as one comma-separated list, the form every
// Skein program takes.
func (c *Cluster) List() string { return strings.Join(c.URLs, ",") }

// NATSClusterEnv returns the NATS cluster, or fails (CI) or skips the
// test. The test holds the cluster alone until it ends (see lock): call
// it once per test.
func NATSClusterEnv(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{URLs: splitList(Require(t, NATSCluster)), ctl: Require(t, NATSClusterCtl)}
	c.Monitor = splitList(Require(t, NATSClusterMonitor))
	if len(c.URLs) != 3 || len(c.Monitor) != 3 {
		t.Fatalf("%s and %s: want 3 URLs each, got %v and %v", NATSCluster, NATSClusterMonitor, c.URLs, c.Monitor)
	}
	c.lock(t)
	return c
}

// AMQPClusterEnv returns the RabbitMQ cluster, or fails (CI) or skips the
// test. The test holds the cluster alone until it ends (see lock): call
// it once per test.
func AMQPClusterEnv(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{URLs: splitList(Require(t, AMQPCluster)), ctl: Require(t, AMQPClusterCtl)}
	if len(c.URLs) != 3 {
		t.Fatalf("%s: want 3 URLs, got %v", AMQPCluster, c.URLs)
	}
	c.lock(t)
	return c
}

// lock gives the test the cluster alone until it ends: tests kill nodes,
// and two tests (of one package or of two, which go test runs at once)
// killing a node each would leave a 3-node cluster without a majority.
// The lock is an flock on a file named after the cluster's control
// command, in the system's temporary directory.
func (c *Cluster) lock(t testing.TB) {
	t.Helper()
	sum := sha256.Sum256([]byte(c.ctl))
	path := filepath.Join(os.TempDir(), "skein-cluster-"+hex.EncodeToString(sum[:6])+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("cluster lock: %v", err)
	}
	start := time.Now()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("cluster lock %s: %v", path, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("waited %s for the cluster (another test held it)", d.Round(time.Millisecond))
	}
	t.Cleanup(func() { f.Close() })
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Ctl runs the cluster's control command with args ("kill-node 2",
// "start-node 2", "ctl 1 list_connections") and returns its stdout.
func (c *Cluster) Ctl(args ...string) (string, error) {
	cmd := exec.Command("sh", "-c", c.ctl+" "+strings.Join(args, " "))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", c.ctl, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// KillNode SIGKILLs node n (1 to 3) and, when the test ends, starts it
// again if the test has not (StartNode), so that the next test finds
// three nodes.
func (c *Cluster) KillNode(t testing.TB, n int) {
	t.Helper()
	t.Cleanup(func() {
		if _, err := c.Ctl("start-node", fmt.Sprint(n)); err != nil {
			t.Errorf("bringing node %d back: %v", n, err)
		}
	})
	if _, err := c.Ctl("kill-node", fmt.Sprint(n)); err != nil {
		t.Fatal(err)
	}
}

// StartNode starts node n again (on its ports and data) and returns once
// it serves.
func (c *Cluster) StartNode(t testing.TB, n int) {
	t.Helper()
	if _, err := c.Ctl("start-node", fmt.Sprint(n)); err != nil {
		t.Fatal(err)
	}
}
