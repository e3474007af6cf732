package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/wire"
)

// streamLine is one line of `submit map --stream`: a result, an error,
// or the final status.
type streamLine struct {
	Index  *int            `json:"index"`
	Result json.RawMessage `json:"result"`
	Error  *wire.TaskError `json:"error"`
	Status *wire.JobStatus `json:"status"`
	at     time.Time       // when the line was read
}

// submitStream runs submit with --stream and returns its lines, each with
// the time it was read, and the exit code.
func submitStream(t *testing.T, args ...string) ([]streamLine, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "submit"), append(args, "--stream")...)
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []streamLine
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l streamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d %q: %v", len(lines)+1, sc.Text(), err)
		}
		l.at = time.Now()
		lines = append(lines, l)
	}
	code := 0
	if err := cmd.Wait(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("submit: %v; stderr:\n%s", err, stderr.String())
		}
		code = ee.ExitCode()
	}
	if t.Failed() || code != 0 {
		t.Logf("submit exit %d, stderr:\n%s", code, stderr.String())
	}
	return lines, code
}

// TestStreamResults: `submit map --stream` over 10,000 tasks prints
// 10,000 result lines, each index once with its own value, then the
// final status; the first line comes before the job is half done.
// Embedded and on each broker.
func TestStreamResults(t *testing.T) {
	const n = 10000
	iter := filepath.Join(t.TempDir(), "iter.json")
	if err := os.WriteFile(iter, []byte(indexedSleeps(n, 0.0005)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"map", "--function", "sleep", "--iterdata-from", iter}
	run := func(t *testing.T, args ...string) {
		lines, code := submitStream(t, args...)
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		if len(lines) != n+1 {
			t.Fatalf("%d lines, want %d results and the status", len(lines), n)
		}
		seen := make([]bool, n)
		for k, l := range lines[:n] {
			if l.Index == nil || l.Error != nil || l.Status != nil {
				t.Fatalf("line %d is not a result: %+v", k+1, l)
			}
			i := *l.Index
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("line %d: index %d out of range or seen before", k+1, i)
			}
			seen[i] = true
			if string(l.Result) != fmt.Sprint(i) {
				t.Fatalf("line %d: task %d gave %s", k+1, i, l.Result)
			}
		}
		st := lines[n].Status
		if st == nil || st.State != wire.StateDone || st.Done != n {
			t.Fatalf("last line %+v: want the status of a done job of %d tasks", lines[n], n)
		}
		// The first result is printed before half of the job's time
		// (the coordinator's clock: submitted to ended) has passed.
		half := time.Unix(0, st.Submitted+(st.Ended-st.Submitted)/2)
		if !lines[0].at.Before(half) {
			t.Errorf("first result at %v, after half the job (submitted %v, ended %v)",
				lines[0].at.Format(time.StampMicro), time.Unix(0, st.Submitted).Format(time.StampMicro), time.Unix(0, st.Ended).Format(time.StampMicro))
		}
		t.Logf("job %v; first result %v after submission", time.Duration(st.Ended-st.Submitted), lines[0].at.Sub(time.Unix(0, st.Submitted)))
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		run(t, append(args, "--workers", "2")...)
	})
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			url := namespaced(t, testenv.Require(t, bk.env))
			cluster(t, url, 1)
			run(t, append(args, "--bus", url)...)
		})
	}
}

// TestStreamFailedTask: the task whose failure ends the job is printed
// with its error, then the failed status, and submit exits as for any
// failed job.
func TestStreamFailedTask(t *testing.T) {
	iter := `[{"x":0.001,"value":0},{"x":0.001,"value":1},{"x":"not a number"},{"x":0.001,"value":3}]`
	lines, code := submitStream(t, "map", "--function", "sleep", "--iterdata", iter, "--workers", "1")
	if code != cli.ExitJobFailed {
		t.Fatalf("exit %d, want %d", code, cli.ExitJobFailed)
	}
	if len(lines) < 2 {
		t.Fatalf("lines %+v", lines)
	}
	last := lines[len(lines)-1]
	if last.Status == nil || last.Status.State != wire.StateFailed {
		t.Fatalf("last line %+v: want the failed status", last)
	}
	var failed *streamLine
	for k := range lines[:len(lines)-1] {
		l := &lines[k]
		if l.Index == nil {
			t.Fatalf("line %d has no index: %+v", k+1, l)
		}
		if l.Error != nil {
			failed = l
		} else if want := fmt.Sprint(*l.Index); string(l.Result) != want || *l.Index == 2 {
			t.Fatalf("line %d: task %d gave %s", k+1, *l.Index, l.Result)
		}
	}
	if failed == nil || *failed.Index != 2 || failed.Error.Message == "" {
		t.Fatalf("no error line for task 2: %+v", lines)
	}
}

// TestStreamRefused: --stream makes no sense for a mapreduce job (no such
// flag) or with --no-wait: usage errors, before anything is submitted.
func TestStreamRefused(t *testing.T) {
	for _, args := range [][]string{
		{"mapreduce", "--function", "noop", "--iterdata", "[1]", "--reduce-function", "sum", "--stream"},
		{"map", "--function", "noop", "--iterdata", "[1]", "--stream", "--no-wait"},
	} {
		_, errOut, code := submit(t, args...)
		if code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (usage); stderr %s", args, code, cli.ExitUsage, errOut)
		}
	}
}

// TestStreamAcrossBrokerRestart: the broker stops and starts while
// results stream; the stream resumes where it was and prints every
// task's result exactly once.
func TestStreamAcrossBrokerRestart(t *testing.T) {
	amqp, ctl := testenv.PrivateRabbitMQ(t)
	url := namespaced(t, amqp)
	cluster(t, url, 2)
	const n = 400
	type res struct {
		lines []streamLine
		code  int
	}
	done := make(chan res, 1)
	go func() {
		l, c := submitStream(t, "map", "--function", "sleep", "--iterdata", indexedSleeps(n, 0.05), "--bus", url, "--timeout", "150")
		done <- res{l, c}
	}()
	waitProgress(t, url, "", 50)
	for _, verb := range []string{"stop-broker", "start-broker"} {
		if out, err := exec.Command("sh", "-c", ctl+" "+verb).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", verb, err, out)
		}
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if len(r.lines) != n+1 || r.lines[n].Status == nil || r.lines[n].Status.State != wire.StateDone {
		t.Fatalf("%d lines (want %d results and the done status); last %+v", len(r.lines), n, r.lines[len(r.lines)-1])
	}
	seen := make([]bool, n)
	for _, l := range r.lines[:n] {
		if l.Index == nil || *l.Index < 0 || *l.Index >= n || seen[*l.Index] || string(l.Result) != fmt.Sprint(*l.Index) {
			t.Fatalf("bad or repeated result line %+v", l)
		}
		seen[*l.Index] = true
	}
}
