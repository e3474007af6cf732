package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/internal/testenv"
)

// server is a nats-server process configured with the shipped roles.
type server struct {
	url   string
	pw    map[string]string // user -> password
	users []string
}

// password of a namespace's role, as the tests render it.
func password(ns, role string) string { return "pw-" + ns + "-" + role + "-7c1f" }

// startServer renders skein-auth.sh for namespaces and starts nats-server
// with it (its own port and store directory).
func startServer(t *testing.T, extra string, args ...string) *server {
	t.Helper()
	return startServerEdited(t, extra, nil, args...)
}

// startServerEdited is startServer with the rendered users edited first.
func startServerEdited(t *testing.T, extra string, edit func(string) string, args ...string) *server {
	t.Helper()
	if _, err := exec.LookPath("nats-server"); err != nil {
		t.Fatalf("nats-server is not installed: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command("sh", append([]string{"skein-auth.sh"}, args...)...).Output()
	if err != nil {
		t.Fatalf("skein-auth.sh %v: %v", args, err)
	}
	if edit != nil {
		out = []byte(edit(string(out)))
	}
	if err := os.WriteFile(filepath.Join(dir, "skein-auth.conf"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nmax_payload: 8MB\njetstream { store_dir: %q }\n%s\ninclude ./skein-auth.conf\n", port, filepath.Join(dir, "js"), extra)
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{url: fmt.Sprintf("nats://127.0.0.1:%d", port), pw: map[string]string{}}
	cmd := exec.Command("nats-server", "-c", filepath.Join(dir, "nats.conf"))
	cmd.Env = os.Environ()
	for _, ns := range args {
		if strings.HasPrefix(ns, "-") || ns == "default" {
			continue
		}
		for _, role := range []string{"submitter", "coordinator", "runtime", "watcher", "notifier"} {
			v := "SKEIN_" + strings.ToUpper(strings.ReplaceAll(ns, "-", "_")) + "_" + strings.ToUpper(role) + "_PASSWORD"
			cmd.Env = append(cmd.Env, v+"="+password(ns, role))
			s.pw[ns+"-"+role] = password(ns, role)
		}
	}
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
	return s
}

// waitListening waits until the server of conf ("listen: 127.0.0.1:PORT")
// accepts connections.
func waitListening(t *testing.T, conf string, log *testenv.Buffer) {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(conf, "listen: 127.0.0.1:%d", &port); err != nil {
		t.Fatalf("no listen line in %q", conf)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not start:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// client is a raw connection as one user, recording the permission
// violations the server reports.
type client struct {
	nc     *nats.Conn
	mu     sync.Mutex
	denied []string
	seen   chan struct{}
}

func (s *server) connect(t *testing.T, ns, role string) *client {
	t.Helper()
	c := &client{seen: make(chan struct{}, 100)}
	user := ns + "-" + role
	nc, err := nats.Connect(s.url, nats.UserInfo(user, s.pw[user]), nats.CustomInboxPrefix("_INBOX."+ns+"."+role),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.mu.Lock()
				c.denied = append(c.denied, err.Error())
				c.mu.Unlock()
				c.seen <- struct{}{}
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// expectDenied waits until the server has reported a permission
// violation naming subject.
func (c *client) expectDenied(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for _, d := range c.denied {
			if strings.Contains(d, `"`+subject+`"`) {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		select {
		case <-c.seen:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("no permission violation for %q (violations: %q)", subject, c.denied)
		}
	}
}

// msgs is the number of messages a stream holds, as its coordinator sees
// it.
func (s *server) msgs(t *testing.T, ns, stream string) uint64 {
	t.Helper()
	c := s.connect(t, ns, "coordinator")
	js, err := jetstream.New(c.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, strings.ToUpper(ns)+"_"+stream)
	if err != nil {
		t.Fatalf("stream info %s: %v", stream, err)
	}
	return st.CachedInfo().State.Msgs
}

// TestShippedConfig checks that skein-auth.conf is what skein-auth.sh
// writes for the default namespace, and that nats-server accepts it.
func TestShippedConfig(t *testing.T) {
	out, err := exec.Command("sh", "skein-auth.sh", "skein").Output()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile("skein-auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(shipped) {
		t.Errorf("skein-auth.conf differs from `skein-auth.sh skein`: run it again")
	}
	s := startServer(t, "", "skein")
	s.createStreams(t, "skein")
}
