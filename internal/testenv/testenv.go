// Package testenv finds the outside services tests run against (brokers,
// S3, a Python environment). scripts/test.sh starts them and exports their
// addresses; a test that needs one calls Require. Under CI (CI=true) a
// missing service fails the test; elsewhere it skips with a message that
// says how to get it.
package testenv

import (
	"os"
	"testing"
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
