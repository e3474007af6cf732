package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/cli"
)

// serveReply is one line of submit serve's stdout.
type serveReply struct {
	ID     string          `json:"id"`
	Line   json.RawMessage `json:"line"`
	Exit   *int            `json:"exit"`
	Stderr string          `json:"stderr"`
	Job    string          `json:"job"`
	Ready  bool            `json:"ready"`
	Error  string          `json:"error"`
}

// serveSession runs cli.Serve in this process on url: requests go in
// through send, replies come out of the channel, and done yields Serve's
// exit code once stdin is closed.
type serveSession struct {
	in      *io.PipeWriter
	replies chan serveReply
	done    chan int      // Serve's exit code, once
	ended   chan struct{} // closed when Serve has returned
}

func startServe(t *testing.T, url string) *serveSession {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &serveSession{in: inW, replies: make(chan serveReply, 1024), done: make(chan int, 1), ended: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		env := cli.Env{Stdin: inR, Stdout: outW, Stderr: io.Discard, Getenv: os.Getenv}
		s.done <- cli.Serve(ctx, []string{"--bus", url}, env)
		close(s.ended)
		outW.Close()
	}()
	go func() {
		defer close(s.replies)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			var r serveReply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("serve printed %q: %v", sc.Text(), err)
				continue
			}
			s.replies <- r
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case <-s.ended:
		case <-time.After(30 * time.Second):
			t.Error("serve did not end within 30s of its stdin closing")
		}
		cancel()
	})
	if r := s.next(t); !r.Ready {
		t.Fatalf("first reply %+v, want ready", r)
	}
	return s
}

func (s *serveSession) send(t *testing.T, req string) {
	t.Helper()
	if _, err := io.WriteString(s.in, req+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (s *serveSession) next(t *testing.T) serveReply {
	t.Helper()
	select {
	case r, ok := <-s.replies:
		if !ok {
			t.Fatal("serve's stdout ended")
		}
		return r
	case <-time.After(time.Minute):
		t.Fatal("no reply from serve within a minute")
	}
	return serveReply{}
}

// collect reads replies until every id in ids has its exit, and returns
// the lines and exit of each.
func (s *serveSession) collect(t *testing.T, ids ...string) (map[string][]string, map[string]serveReply) {
	t.Helper()
	lines, exits := map[string][]string{}, map[string]serveReply{}
	for len(exits) < len(ids) {
		r := s.next(t)
		switch {
		case r.Exit != nil:
			exits[r.ID] = r
		case r.Line != nil:
			lines[r.ID] = append(lines[r.ID], string(r.Line))
		default:
			t.Fatalf("unexpected reply %+v", r)
		}
	}
	return lines, exits
}

// TestServe: submit's client mode runs jobs over one bus connection:
// concurrent jobs each get their own lines and exit code, a streamed
// map's results come as lines, a failing job has its exit code and
// stderr, a cancel request cancels the job on the coordinator (exit 6),
// a bad request is answered with an error, and closing stdin cancels
// the jobs still running and ends serve. A job's exit reply names it, and
// serve plots it on request.
func TestServe(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	cluster(t, url, 1)
	s := startServe(t, url)

	s.send(t, `{"id":"a","args":["call","--function","add","--data","{\"x\":1,\"y\":3}","--quiet"]}`)
	s.send(t, `{"id":"m","args":["map","--function","sleep","--iterdata","[{\"x\":0.01,\"value\":\"v0\"},{\"x\":0,\"value\":\"v1\"}]","--stream","--quiet"]}`)
	s.send(t, `{"id":"f","args":["call","--function","nosuchfunction","--quiet"]}`)
	lines, exits := s.collect(t, "a", "m", "f")
	if e := exits["a"]; *e.Exit != 0 || strings.Join(lines["a"], "|") != "4" {
		t.Errorf("call: exit %d, lines %q, stderr %q; want 0 and 4", *e.Exit, lines["a"], e.Stderr)
	}
	if e := exits["m"]; *e.Exit != 0 || len(lines["m"]) != 3 {
		t.Errorf("map: exit %d, lines %q; want 0, two results and the status", *e.Exit, lines["m"])
	}
	got := map[string]bool{}
	for _, l := range lines["m"] {
		var r struct {
			Index  *int
			Result string
		}
		if json.Unmarshal([]byte(l), &r) == nil && r.Index != nil {
			got[fmt.Sprintf("%d=%s", *r.Index, r.Result)] = true
		}
	}
	if !got["0=v0"] || !got["1=v1"] {
		t.Errorf("map results %q, want 0=v0 and 1=v1", lines["m"])
	}
	if e := exits["f"]; *e.Exit == 0 || e.Stderr == "" {
		t.Errorf("failing job: exit %d, stderr %q; want non-zero and the error", *e.Exit, e.Stderr)
	}

	// The exit reply names the job; its timeline can be plotted later.
	job := exits["m"].Job
	if job == "" {
		t.Fatalf("map's exit reply %+v names no job", exits["m"])
	}
	html := filepath.Join(t.TempDir(), "m.html")
	s.send(t, fmt.Sprintf(`{"id":"p","args":["plot",%q,"-o",%q]}`, job, html))
	if _, exits = s.collect(t, "p"); *exits["p"].Exit != 0 {
		t.Fatalf("plot: exit %d, stderr %q", *exits["p"].Exit, exits["p"].Stderr)
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(strings.ToLower(string(b)), "<!doctype html") {
		t.Errorf("plot wrote %.80q (%v), want an HTML page", b, err)
	}
	s.send(t, `{"id":"q","args":["status","x"]}`)
	if _, exits = s.collect(t, "q"); *exits["q"].Exit != cli.ExitUsage {
		t.Errorf("status through serve: exit %d, want %d (serve runs jobs and plots only)", *exits["q"].Exit, cli.ExitUsage)
	}

	s.send(t, `not json`)
	if r := s.next(t); r.Error == "" {
		t.Errorf("bad request answered %+v, want an error", r)
	}

	// Cancel: a job of long sleeps ends cancelled, well before them.
	start := time.Now()
	s.send(t, `{"id":"c","args":["map","--function","sleep","--iterdata","[{\"x\":60},{\"x\":60}]","--quiet"]}`)
	s.send(t, `{"id":"c","cancel":true}`)
	_, exits = s.collect(t, "c")
	if e := exits["c"]; *e.Exit != cli.ExitCancelled {
		t.Errorf("cancelled job: exit %d, stderr %q; want %d", *e.Exit, e.Stderr, cli.ExitCancelled)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("cancelled job took %v", d)
	}

	// Closing stdin cancels what still runs, then serve ends.
	s.send(t, `{"id":"z","args":["call","--function","sleep","--data","{\"x\":60}","--quiet"]}`)
	s.in.Close()
	_, exits = s.collect(t, "z")
	if e := exits["z"]; *e.Exit != cli.ExitCancelled {
		t.Errorf("job running at stdin's end: exit %d, stderr %q; want %d", *e.Exit, e.Stderr, cli.ExitCancelled)
	}
	select {
	case code := <-s.done:
		if code != 0 {
			t.Errorf("serve exited %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve still running 30s after its stdin closed")
	}
}

// TestServeNoBus: serve without a bus says so as its only reply and
// exits with the usage code.
func TestServeNoBus(t *testing.T) {
	inR, _ := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- cli.Serve(context.Background(), nil, cli.Env{Stdin: inR, Stdout: outW, Stderr: io.Discard,
			Getenv: func(string) string { return "" }})
		outW.Close()
	}()
	b, _ := io.ReadAll(outR)
	var r serveReply
	if err := json.Unmarshal(b, &r); err != nil || !strings.Contains(r.Error, "needs a bus") {
		t.Errorf("reply %q, want an error naming the missing bus", b)
	}
	if code := <-done; code != cli.ExitUsage {
		t.Errorf("exit %d, want %d", code, cli.ExitUsage)
	}
}

// TestSubmitSignalCancels: SIGINT to a waiting submit cancels its job on
// the coordinator (exit 6), as before serve shared that path.
func TestSubmitSignalCancels(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	cluster(t, url, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "submit"), "call", "--function", "sleep", "--data", `{"x":60}`, "--bus", url)
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the job is submitted, submit prints its progress on stderr.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "job") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	_ = cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != cli.ExitCancelled {
		t.Fatalf("exit %v, want %d; stderr:\n%s", err, cli.ExitCancelled, stderr.String())
	}
	if !strings.Contains(stderr.String(), "cancelling job") {
		t.Errorf("stderr %q does not say the job is cancelled", stderr.String())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v after the signal", d)
	}
}

// TestServeEmbedded: serve --embedded runs an installation of its own and
// every job on it; the jobs see one installation (a job's result is
// there for the next), and closing stdin ends it.
func TestServeEmbedded(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &serveSession{in: inW, replies: make(chan serveReply, 1024), done: make(chan int, 1), ended: make(chan struct{})}
	go func() {
		env := cli.Env{Stdin: inR, Stdout: outW, Stderr: io.Discard, Getenv: func(k string) string {
			if k == "SKEIN_BUS" {
				return "nats://127.0.0.1:1" // ignored: --embedded joins no bus
			}
			return os.Getenv(k)
		}}
		s.done <- cli.Serve(context.Background(), []string{"--embedded", "--workers", "2", "--hosts", "go"}, env)
		close(s.ended)
		outW.Close()
	}()
	go func() {
		defer close(s.replies)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			var r serveReply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("serve printed %q: %v", sc.Text(), err)
				continue
			}
			s.replies <- r
		}
	}()
	if r := s.next(t); !r.Ready {
		t.Fatalf("first reply %+v, want ready", r)
	}
	s.send(t, `{"id":"a","args":["call","--function","add","--data","{\"x\":2,\"y\":3}","--quiet"]}`)
	s.send(t, `{"id":"m","args":["map","--function","sleep","--iterdata","[{\"x\":0,\"value\":1},{\"x\":0,\"value\":2}]","--stream","--quiet"]}`)
	lines, exits := s.collect(t, "a", "m")
	if *exits["a"].Exit != 0 || strings.Join(lines["a"], "|") != "5" {
		t.Errorf("call: exit %d, lines %q, stderr %q", *exits["a"].Exit, lines["a"], exits["a"].Stderr)
	}
	if *exits["m"].Exit != 0 || len(lines["m"]) != 3 {
		t.Errorf("map: exit %d, lines %q, stderr %q", *exits["m"].Exit, lines["m"], exits["m"].Stderr)
	}
	// One installation: the first job is known to the same coordinator.
	html := filepath.Join(t.TempDir(), "a.html")
	s.send(t, fmt.Sprintf(`{"id":"p","args":["plot",%q,"-o",%q]}`, exits["a"].Job, html))
	if _, exits = s.collect(t, "p"); *exits["p"].Exit != 0 {
		t.Errorf("plot of an earlier job: exit %d, stderr %q", *exits["p"].Exit, exits["p"].Stderr)
	}
	inW.Close()
	select {
	case code := <-s.done:
		if code != 0 {
			t.Errorf("serve exited %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve --embedded still running 30s after its stdin closed")
	}
}
