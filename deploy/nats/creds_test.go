package nats

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/skeinrun/skein/internal/testenv"
)

// TestNKEYSubmitter: the submitter authenticates with an NKEY seed file
// (the user in the config has `nkey:` instead of a password) and keeps
// its role's rights.
func TestNKEYSubmitter(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "submitter.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerEdited(t, "", func(conf string) string {
		old := `user: "a-submitter", password: $SKEIN_A_SUBMITTER_PASSWORD`
		if !strings.Contains(conf, old) {
			t.Fatalf("no submitter user in the rendered config")
		}
		return strings.Replace(conf, old, `nkey: "`+pub+`"`, 1)
	}, "a")
	c := start(t, s.roleEnv("a", "coordinator"), "coordinator")
	waitFor(t, c, "coordinator serving")
	start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "1")
	bus := s.url + "?ns=a"
	code, out, errOut := run(t, []string{"SKEIN_BUS=" + bus}, "submit", "call", "--function", "add", "--data", `{"x":1,"y":3}`, "--bus-nkey", seedFile)
	if code != 0 || strings.TrimSpace(out) != "4" {
		t.Fatalf("submit with an NKEY: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	// Another key: refused, exit 5.
	other, _ := nkeys.CreateUser()
	oseed, _ := other.Seed()
	if err := os.WriteFile(seedFile, oseed, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, []string{"SKEIN_BUS=" + bus, "SKEIN_BUS_NKEY=" + seedFile}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, string(oseed)) {
		t.Errorf("submit with an unknown NKEY: exit %d, stderr %q; want exit 5", code, errOut)
	}
}

// TestTokenFile: a server with token authentication; the programs read
// the token from a file or the environment.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\nauthorization { token: $SKEIN_TEST_TOKEN }\n", port, filepath.Join(dir, "js"))
	startRaw(t, dir, conf, "SKEIN_TEST_TOKEN=tok-3f9a")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok-3f9a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bus := fmt.Sprintf("SKEIN_BUS=nats://127.0.0.1:%d", port)
	c := start(t, []string{bus, "SKEIN_BUS_TOKEN_FILE=" + tokenFile}, "coordinator")
	waitFor(t, c, "coordinator serving")
	start(t, []string{bus, "SKEIN_BUS_TOKEN=tok-3f9a"}, "runtime", "--slots", "1")
	code, out, errOut := run(t, []string{bus}, "submit", "map", "--function", "add", "--iterdata", "[1,2]", "--extra-params", `{"y":1}`, "--bus-token-file", tokenFile, "--quiet")
	if code != 0 || strings.TrimSpace(out) != "[2,3]" {
		t.Fatalf("submit with a token file: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	code, _, errOut = run(t, []string{bus, "SKEIN_BUS_TOKEN=wrong-tok-77"}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 || strings.Contains(errOut, "wrong-tok-77") {
		t.Errorf("wrong token: exit %d, stderr %q; want exit 5 without the token", code, errOut)
	}
}

// TestCredsFile: a server in operator mode (JWT accounts); the programs
// authenticate with a .creds file.
func TestCredsFile(t *testing.T) {
	dir := t.TempDir()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	creds := func(name string) string {
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		useed, _ := ukp.Seed()
		uc := jwt.NewUserClaims(upub)
		uc.Name = name
		ujwt, err := uc.Encode(akp)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(ujwt, useed)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".creds")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// JetStream needs a system account.
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\noperator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: { %s: %s, %s: %s }\n",
		port, filepath.Join(dir, "js"), ojwt, spub, apub, ajwt, spub, sjwt)
	startRaw(t, dir, conf)
	bus := fmt.Sprintf("SKEIN_BUS=nats://127.0.0.1:%d", port)
	c := start(t, []string{bus, "SKEIN_BUS_CREDS=" + creds("coordinator")}, "coordinator")
	waitFor(t, c, "coordinator serving")
	start(t, []string{bus, "SKEIN_BUS_CREDS=" + creds("runtime")}, "runtime", "--slots", "1")
	code, out, errOut := run(t, []string{bus}, "submit", "call", "--function", "add", "--data", `{"x":1,"y":3}`, "--bus-creds", creds("submitter"))
	if code != 0 || strings.TrimSpace(out) != "4" {
		t.Fatalf("submit with a creds file: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	// A creds file of an account the server does not know: exit 5.
	akp2, _ := nkeys.CreateAccount()
	akp = akp2
	code, _, errOut = run(t, []string{bus, "SKEIN_BUS_CREDS=" + creds("stranger")}, "submit", "call", "--function", "add", "--data", `{}`)
	if code != 5 {
		t.Errorf("unknown account's creds: exit %d, stderr %q; want exit 5", code, errOut)
	}
}

// startRaw starts nats-server with conf written in dir.
func startRaw(t *testing.T, dir, conf string, env ...string) {
	t.Helper()
	p := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nats-server", "-c", p)
	cmd.Env = append(os.Environ(), env...)
	log := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server log:\n%s", log.String())
		}
	})
	waitListening(t, conf, log)
}
