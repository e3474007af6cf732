package rabbitmq

import (
	"bufio"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/internal/testpki"
)

// startTLSNode starts a RabbitMQ node of its own (own directory, ports,
// epmd and cookie; the shared broker is not touched) with an amqps://
// listener that verifies client certificates, and returns its amqps URL
// with the default user's password in it.
func startTLSNode(t *testing.T, p testpki.PKI) *url.URL {
	t.Helper()
	testenv.Require(t, testenv.AMQPCtl) // RabbitMQ is installed here
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{p.CA: "ca.pem", p.ServerCert: "server.pem", p.ServerKey: "server-key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tlsDir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("../../scripts/services/rabbitmq.sh")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SKEIN_RABBITMQ_DIR="+filepath.Join(dir, "node"), "SKEIN_RABBITMQ_TLS_DIR="+tlsDir, "SKEIN_RABBITMQ_NODE=skeintls@localhost")
	stop := func() {
		cmd := exec.Command("bash", script, "stop")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("stopping the TLS node: %v\n%s", err, out)
		}
	}
	t.Cleanup(stop)
	cmd := exec.Command("bash", script, "start")
	cmd.Env = env
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting a RabbitMQ node with TLS: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "export SKEIN_TEST_AMQPS_URL="); ok {
			u, err := url.Parse(v)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
	}
	t.Fatalf("no SKEIN_TEST_AMQPS_URL in:\n%s", out)
	return nil
}

// TestTLSEndToEnd runs the three programs over amqps:// with a CA and
// client certificates the test makes; without the CA a client fails with
// exit 5 and says why.
func TestTLSEndToEnd(t *testing.T) {
	p := testpki.New(t)
	u := startTLSNode(t, p)
	pw, _ := u.User.Password()
	u.User = url.User(u.User.Username())
	bus := u.String() + "?ns=tls"
	env := []string{"SKEIN_BUS=" + bus, "SKEIN_BUS_PASSWORD=" + pw, "SKEIN_TLS_CA=" + p.CA, "SKEIN_TLS_CERT=" + p.ClientCert, "SKEIN_TLS_KEY=" + p.ClientKey}
	c := start(t, env, "coordinator")
	waitFor(t, c, "coordinator serving")
	start(t, env, "runtime", "--slots", "2")
	code, out, errOut := run(t, env, "submit", "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet")
	if code != 0 || strings.TrimSpace(out) != "[2,3,4]" {
		t.Fatalf("submit over amqps: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, []string{"SKEIN_BUS=" + bus, "SKEIN_BUS_PASSWORD=" + pw}, "submit", "call", "--function", "add", "--data", `{"x":1,"y":3}`, "--tls-ca", p.CA, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey)
	if code != 0 || strings.TrimSpace(out) != "4" {
		t.Fatalf("submit over amqps with flags: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	code, _, errOut = run(t, []string{"SKEIN_BUS=" + bus, "SKEIN_BUS_PASSWORD=" + pw, "SKEIN_TLS_CERT=" + p.ClientCert, "SKEIN_TLS_KEY=" + p.ClientKey}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || !strings.Contains(errOut, "--tls-ca") || strings.Contains(errOut, pw) {
		t.Errorf("submit without the CA: exit %d, stderr %q; want exit 5 naming --tls-ca, without the password", code, errOut)
	}
	t.Logf("without the CA: %s", errOut)
	code, _, errOut = run(t, []string{"SKEIN_BUS=" + bus, "SKEIN_BUS_PASSWORD=" + pw, "SKEIN_TLS_CA=" + p.CA}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, pw) {
		t.Errorf("submit without a client certificate: exit %d, stderr %q; want exit 5", code, errOut)
	}
	t.Logf("without a client certificate: %s", errOut)
}
