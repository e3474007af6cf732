package rabbitmq_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestStoppedServerHoldsFewRequests: a server process that is stopped
// (SIGSTOP, a frozen machine) keeps its connection, and the broker hands
// it requests until it holds its prefetch of unacknowledged ones. A
// client's copy of a request answers it in the end, but every request
// that lands there first costs the client its HedgeAfter, and the queue
// hands requests round, so with two servers every other one did, until
// the broker gave up on the connection's heartbeats (about 25 s). The
// stopped server now holds at most one request per subject.
func TestStoppedServerHoldsFewRequests(t *testing.T) {
	if os.Getenv("SKEIN_TEST_STOPPED_SERVER") != "" {
		return // the helper process, run by serveFromProcess
	}
	url := testenv.Require(t, testenv.AMQPURL)
	prefix := fmt.Sprintf("skein-stopped-%d", time.Now().UnixNano())
	b, _ := connect(t, url, rabbitmq.Options{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const subject = "api.status"
	if err := b.Serve(ctx, subject, func(ctx context.Context, m bus.Message) ([]byte, error) {
		return []byte("live"), nil
	}); err != nil {
		t.Fatal(err)
	}
	p := serveFromProcess(t, url, prefix, subject)
	// Both serve: requests go round between them.
	fromHelper := 0
	for range 20 {
		out, err := b.Request(ctx, subject, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) == "helper" {
			fromHelper++
		}
	}
	if fromHelper == 0 {
		t.Fatal("no request reached the helper process's server")
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	const n = 20
	unanswered := 0
	for range n {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := b.Request(rctx, subject, []byte("x"))
		rcancel()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			unanswered++
		default:
			t.Fatal(err)
		}
	}
	t.Logf("with the helper stopped, %d of %d requests went unanswered", unanswered, n)
	if unanswered > 1 {
		t.Fatalf("%d of %d requests landed on the stopped server (want at most one: its prefetch)", unanswered, n)
	}
}

// serveFromProcess runs this test binary as a second server of subject
// (the helper half of TestStoppedServerHoldsFewRequests), which answers
// "helper", and returns its process once it serves; it is killed with
// the test.
func serveFromProcess(t *testing.T, url, prefix, subject string) *os.Process {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoppedServerHelper$")
	cmd.Env = append(os.Environ(), "SKEIN_TEST_STOPPED_SERVER=1", "SKEIN_TEST_STOPPED_URL="+url,
		"SKEIN_TEST_STOPPED_PREFIX="+prefix, "SKEIN_TEST_STOPPED_SUBJECT="+subject)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if strings.TrimSpace(lines.Text()) == "serving" {
			go func() {
				for lines.Scan() {
				}
			}()
			return cmd.Process
		}
	}
	t.Fatalf("the helper server exited before serving: %v", lines.Err())
	return nil
}

// TestStoppedServerHelper is the helper process of
// TestStoppedServerHoldsFewRequests: it serves until killed.
func TestStoppedServerHelper(t *testing.T) {
	if os.Getenv("SKEIN_TEST_STOPPED_SERVER") == "" {
		return
	}
	ctx := context.Background()
	b, err := rabbitmq.Connect(ctx, os.Getenv("SKEIN_TEST_STOPPED_URL"), rabbitmq.Options{Prefix: os.Getenv("SKEIN_TEST_STOPPED_PREFIX")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(ctx, os.Getenv("SKEIN_TEST_STOPPED_SUBJECT"), func(ctx context.Context, m bus.Message) ([]byte, error) {
		return []byte("helper"), nil
	}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("serving")
	select {}
}
