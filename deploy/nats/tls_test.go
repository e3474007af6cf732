package nats

import (
	"fmt"
	"strings"
	"testing"

	"github.com/skeinrun/skein/internal/testpki"
)

// TestTLSEndToEnd runs the three programs with their roles' credentials
// over TLS, the server verifying client certificates; a submit without
// the CA fails with exit 5 and says why.
func TestTLSEndToEnd(t *testing.T) {
	p := testpki.New(t)
	s := startServer(t, fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 5 }", p.ServerCert, p.ServerKey, p.CA), "a")
	s.url = strings.Replace(s.url, "nats://", "tls://", 1)
	tlsEnv := []string{"SKEIN_TLS_CA=" + p.CA, "SKEIN_TLS_CERT=" + p.ClientCert, "SKEIN_TLS_KEY=" + p.ClientKey}
	c := start(t, append(s.roleEnv("a", "coordinator"), tlsEnv...), "coordinator")
	waitFor(t, c, "coordinator serving")
	start(t, append(s.roleEnv("a", "runtime"), tlsEnv...), "runtime", "--slots", "2")
	code, out, errOut := run(t, append(s.roleEnv("a", "submitter"), tlsEnv...), "submit", "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet")
	if code != 0 || strings.TrimSpace(out) != "[2,3,4]" {
		t.Fatalf("submit over TLS: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	// Flags instead of the environment.
	code, out, errOut = run(t, s.roleEnv("a", "submitter"), "submit", "call", "--function", "add", "--data", `{"x":1,"y":3}`, "--tls-ca", p.CA, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey)
	if code != 0 || strings.TrimSpace(out) != "4" {
		t.Fatalf("submit over TLS with flags: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	// Without the CA: the server's certificate is not trusted.
	code, _, errOut = run(t, append(s.roleEnv("a", "submitter"), "SKEIN_TLS_CERT="+p.ClientCert, "SKEIN_TLS_KEY="+p.ClientKey), "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || !strings.Contains(errOut, "--tls-ca") || strings.Contains(errOut, s.pw["a-submitter"]) {
		t.Errorf("submit without the CA: exit %d, stderr %q; want exit 5 naming --tls-ca", code, errOut)
	}
	t.Logf("without the CA: %s", errOut)
	// Without a client certificate: the server refuses the connection.
	code, _, errOut = run(t, append(s.roleEnv("a", "submitter"), "SKEIN_TLS_CA="+p.CA), "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 {
		t.Errorf("submit without a client certificate: exit %d, stderr %q; want exit 5", code, errOut)
	}
	t.Logf("without a client certificate: %s", errOut)
}

// TestWrongPassword: wrong credentials exit 5, and the password shows
// nowhere.
func TestWrongPassword(t *testing.T) {
	s := startServer(t, "", "a")
	env := s.roleEnv("a", "submitter")
	env[1] = "SKEIN_BUS_PASSWORD=wrong-secret-42"
	code, _, errOut := run(t, env, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, "wrong-secret-42") || !strings.Contains(errOut, "credentials") {
		t.Errorf("wrong password: exit %d, stderr %q; want exit 5 naming the credentials, without the password", code, errOut)
	}
	t.Logf("wrong password: %s", errOut)
	// A password in the URL is redacted too.
	u := strings.Replace(s.url, "nats://", "nats://a-submitter:url-secret-43@", 1)
	code, _, errOut = run(t, []string{"SKEIN_BUS=" + u + "?ns=a"}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, "url-secret-43") {
		t.Errorf("wrong password in the URL: exit %d, stderr %q; want exit 5 without the password", code, errOut)
	}
}

// TestRuntimeBeforeCoordinator: a runtime may not create the streams;
// started before any coordinator, it exits 5 and says what to do.
func TestRuntimeBeforeCoordinator(t *testing.T) {
	s := startServer(t, "", "a")
	code, _, errOut := run(t, s.roleEnv("a", "runtime"), "runtime", "--max-tasks", "1")
	if code != 5 || !strings.Contains(errOut, "start the coordinator first") {
		t.Errorf("runtime before the coordinator: exit %d, stderr %q; want exit 5 saying to start the coordinator", code, errOut)
	}
}
