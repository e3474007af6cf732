package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// runEnv runs a program with extra environment variables and returns
// stdout, stderr and the exit code.
func runEnv(t *testing.T, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), stderr.String(), code
}

// service is a long-running program that the test stops itself.
type service struct {
	name string
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{}
}

func startService(t *testing.T, env []string, name string, args ...string) *service {
	t.Helper()
	s := &service{name: name, cmd: exec.Command(filepath.Join(binDir, name), args...), out: &testenv.Buffer{}, done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, tailOf(s.out.String(), 4000))
		}
	})
	return s
}

// stop ends the program with SIGTERM and waits for it (so that its
// exporters have flushed).
func (s *service) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15s of SIGTERM", s.name)
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *service) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.out.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q:\n%s", s.name, text, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// span is the part of the stdout exporter's JSON the test reads.
type span struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct {
		TraceID, SpanID string
		Remote          bool
	}
	Attributes []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s span) attr(k string) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return fmt.Sprint(a.Value.Value)
		}
	}
	return ""
}

// spans picks the exporter's span lines out of a program's stderr (they
// are mixed with its text logs).
func spans(t *testing.T, out string) []span {
	t.Helper()
	var r []span
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"Name":`)) || !bytes.Contains(line, []byte(`"SpanContext"`)) {
			continue
		}
		var s span
		if err := json.Unmarshal(line, &s); err != nil {
			t.Fatalf("span line does not parse: %v\n%s", err, line)
		}
		r = append(r, s)
	}
	return r
}

// TestTraceAcrossProcesses: with the stdout exporter on in submit, a
// coordinator process and a separate runtime process, one job's trace is
// the submit span, the coordinator's job span under it, and one task span
// per task under the job span, recorded by the runtime process.
func TestTraceAcrossProcesses(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	co := startService(t, nil, "coordinator", "--bus", url, "--otel-exporter", "stdout")
	co.waitFor(t, "coordinator serving")
	// The runtime takes the exporter from the environment, the coordinator
	// from its flag: both paths are exercised.
	rt := startService(t, []string{"SKEIN_OTEL_EXPORTER=stdout", "OTEL_SERVICE_NAME=rt-under-test"}, "runtime", "--bus", url, "--slots", "4", "--worker-id", "rt-trace")
	rt.waitFor(t, "runtime started")

	const n = 12
	out, errOut, code := runEnv(t, []string{"SKEIN_OTEL_EXPORTER=stdout"}, "submit", "map", "--bus", url, "--function", "noop", "--iterdata", "[0,1,2,3,4,5,6,7,8,9,10,11]")
	if code != 0 {
		t.Fatalf("submit exit %d: %s\n%s", code, out, errOut)
	}
	co.stop(t)
	rt.stop(t)

	sub := spans(t, errOut)
	if len(sub) != 1 || sub[0].Name != "skein.submit" {
		t.Fatalf("submit recorded %d spans %+v, want one skein.submit", len(sub), sub)
	}
	trace := sub[0].SpanContext.TraceID
	var job *span
	for _, s := range spans(t, co.out.String()) {
		if s.Name == "skein.job" && s.SpanContext.TraceID == trace {
			job = &s
		}
	}
	if job == nil {
		t.Fatalf("no skein.job span of trace %s in the coordinator's output", trace)
	}
	if job.Parent.SpanID != sub[0].SpanContext.SpanID || !job.Parent.Remote {
		t.Errorf("job span's parent %+v, want the submit span %s (remote)", job.Parent, sub[0].SpanContext.SpanID)
	}
	if got := job.attr("skein.job.tasks"); got != strconv.Itoa(n) {
		t.Errorf("job span skein.job.tasks = %q, want %d", got, n)
	}
	tasks := map[string]bool{}
	for _, s := range spans(t, rt.out.String()) {
		if s.Name != "skein.task" {
			continue
		}
		if s.SpanContext.TraceID != trace || s.Parent.SpanID != job.SpanContext.SpanID || !s.Parent.Remote {
			t.Errorf("task span %s in trace %s under %s, want trace %s under the job span %s", s.attr("skein.task"), s.SpanContext.TraceID, s.Parent.SpanID, trace, job.SpanContext.SpanID)
		}
		if w := s.attr("skein.worker"); w != "rt-trace" {
			t.Errorf("task span worker %q, want rt-trace", w)
		}
		if tasks[s.attr("skein.task")] {
			t.Errorf("two spans for task %s", s.attr("skein.task"))
		}
		tasks[s.attr("skein.task")] = true
	}
	for i := 0; i < n; i++ {
		if !tasks[strconv.Itoa(i)] {
			t.Errorf("no span for task %d in the runtime's output", i)
		}
	}
	if !strings.Contains(rt.out.String(), "rt-under-test") {
		t.Errorf("the runtime's spans do not carry OTEL_SERVICE_NAME")
	}
	// The coordinator's metrics: every task published and completed.
	for _, m := range []string{"skein.tasks.published", "skein.tasks.completed", "skein.task.completion_latency"} {
		if !strings.Contains(co.out.String(), `"Name":"`+m+`"`) {
			t.Errorf("the coordinator exported no %s metric", m)
		}
	}
}

var barRE = regexp.MustCompile(`<rect class="bar (done|failed|retried|running)" data-task="(\d+)"`)

// sleepIterdata is n random sleeps of 0..maxMS milliseconds.
func sleepIterdata(n, maxMS int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%.3f", float64(rand.IntN(maxMS+1))/1000)
	}
	b.WriteByte(']')
	return b.String()
}

func readStatus(t *testing.T, path string) wire.JobStatus {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st wire.JobStatus
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("status file: %v", err)
	}
	return st
}

// TestPlotThousandTasks runs a 1,000-task job through the real programs,
// writes its plot with `submit plot JOB` (events replayed from the bus) and
// opens it in headless Chromium: 1,000 bars rendered, no errors.
func TestPlotThousandTasks(t *testing.T) {
	chromium := testenv.Require(t, testenv.Chromium)
	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	dir := t.TempDir()
	co := startService(t, nil, "coordinator", "--bus", url)
	co.waitFor(t, "coordinator serving")
	startService(t, nil, "runtime", "--bus", url, "--slots", "16")

	stFile := filepath.Join(dir, "status.json")
	direct := filepath.Join(dir, "direct.html")
	out, errOut, code := runEnv(t, nil, "submit", "map", "--bus", url, "--function", "sleep", "--iterdata", sleepIterdata(1000, 20),
		"--status-file", stFile, "--no-fetch", "--plot", direct)
	if code != 0 {
		t.Fatalf("submit exit %d: %s\n%s", code, out, errOut)
	}
	st := readStatus(t, stFile)
	page := filepath.Join(dir, "plot.html")
	if out, errOut, code := runEnv(t, nil, "submit", "plot", st.ID, "--bus", url, "-o", page); code != 0 {
		t.Fatalf("submit plot exit %d: %s\n%s", code, out, errOut)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(barRE.FindAll(html, -1)); n != 1000 {
		t.Errorf("submit plot drew %d bars, want 1000", n)
	}
	if d, _ := os.ReadFile(direct); len(barRE.FindAll(d, -1)) != 1000 {
		t.Errorf("--plot drew %d bars, want 1000", len(barRE.FindAll(d, -1)))
	}
	r := renderPlot(t, chromium, dir, html)
	if r.Bars != 1000 || r.Tasks != 1000 || r.Drawn != 1000 {
		t.Errorf("Chromium rendered %d bars (%d with a box) over %d tasks, want 1000", r.Bars, r.Drawn, r.Tasks)
	}
	if len(r.Errors) > 0 || r.Resources != 0 || r.Hbins == 0 {
		t.Errorf("page errors %v, %d resources loaded, %d histogram bins", r.Errors, r.Resources, r.Hbins)
	}
}

// checkScript counts what Chromium rendered and writes it into a title
// element, which --dump-dom prints.
const checkScript = `<script>
(function(){
  var errs = [];
  window.addEventListener('error', function(e){ errs.push(String(e.message || e.type)); }, true);
  window.addEventListener('load', function(){
    var bars = document.querySelectorAll('svg.timeline rect.bar');
    var tasks = {}, drawn = 0;
    bars.forEach(function(b){ tasks[b.getAttribute('data-task')] = 1; var bb = b.getBBox(); if (bb.width > 0 && bb.height > 0) drawn++; });
    var r = {bars: bars.length, drawn: drawn, tasks: Object.keys(tasks).length,
      hbins: document.querySelectorAll('svg.histogram rect.hbin').length,
      resources: performance.getEntriesByType('resource').length, errors: errs};
    var t = document.createElement('title'); t.textContent = 'CHECK ' + JSON.stringify(r);
    document.body.appendChild(t);
  });
})();
</script>
`

var checkRE = regexp.MustCompile(`CHECK (\{[^<]*\})`)

type rendered struct {
	Bars, Drawn, Tasks, Hbins, Resources int
	Errors                               []string
}

func renderPlot(t *testing.T, chromium, dir string, html []byte) rendered {
	t.Helper()
	page := filepath.Join(dir, "check.html")
	if err := os.WriteFile(page, bytes.Replace(html, []byte("</body>"), []byte(checkScript+"</body>"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--dump-dom", "file://"+page)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var out, logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &logs
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, tailOf(logs.String(), 3000))
	}
	m := checkRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the check script did not run; DOM tail %s\nlog: %s", tailOf(out.String(), 1000), tailOf(logs.String(), 3000))
	}
	t.Logf("rendered: %s", m[1])
	var r rendered
	if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "Uncaught") || strings.Contains(l, "CONSOLE") {
			t.Errorf("console: %s", l)
		}
	}
	return r
}

// TestEmbeddedPlotAndProgress runs a job of a few seconds in embedded mode
// (the bus dies with the process) with stderr not a terminal: --plot still
// writes every bar, and progress is a bounded number of plain lines.
func TestEmbeddedPlotAndProgress(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "p.html")
	// 24 tasks of 0.25 s on 2 workers: about 3 s.
	iter := "[" + strings.TrimSuffix(strings.Repeat("0.25,", 24), ",") + "]"
	start := time.Now()
	out, errOut, code := runEnv(t, nil, "submit", "map", "--function", "sleep", "--iterdata", iter, "--workers", "2", "--plot", page)
	elapsed := time.Since(start)
	if code != 0 {
		t.Fatalf("submit exit %d: %s\n%s", code, out, errOut)
	}
	if elapsed < 2*time.Second {
		t.Fatalf("the job took %v; the test wants a job of a few seconds", elapsed)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	t.Logf("%v, progress:\n%s", elapsed, errOut)
	// One line at the start, one per state change, one per 10 s, the
	// final one.
	if max := 4 + int(elapsed/(10*time.Second)); len(lines) > max || len(lines) < 1 {
		t.Errorf("%d progress lines in %v, want 1..%d", len(lines), elapsed, max)
	}
	if strings.ContainsAny(errOut, "\r\x1b") {
		t.Errorf("progress in a non-terminal holds control characters: %q", errOut)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, " done 24/24 ") {
		t.Errorf("last progress line %q does not show the job done", last)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(barRE.FindAll(html, -1)); n != 24 {
		t.Errorf("--plot in embedded mode drew %d bars, want 24", n)
	}
}

// TestPollMode runs the storage-polling baseline in embedded mode over the
// local store: runtimes write one status object per task, and the job ends
// only once a listing has seen them all, so its completion latency is about
// the polling interval, far above the event path's.
func TestPollMode(t *testing.T) {
	root := t.TempDir()
	env := []string{"SKEIN_STORAGE_LOCAL_ROOT=" + root, "SKEIN_STORAGE_ARTIFACTS=local://arts/jobs/"}
	iter := "[" + strings.TrimSuffix(strings.Repeat("0.01,", 40), ",") + "]"
	run := func(args ...string) wire.JobStatus {
		stFile := filepath.Join(t.TempDir(), "st.json")
		a := append([]string{"map", "--function", "sleep", "--iterdata", iter, "--workers", "4", "--status-file", stFile, "--progress", "none"}, args...)
		out, errOut, code := runEnv(t, env, "submit", a...)
		if code != 0 {
			t.Fatalf("submit %v: exit %d: %s\n%s", args, code, out, errOut)
		}
		return readStatus(t, stFile)
	}
	poll := run("--monitor", "poll", "--poll-interval", "300ms")
	events := run()
	t.Logf("completion latency p50/p99: poll %d/%d us, events %d/%d us", poll.LatencyP50us, poll.LatencyP99us, events.LatencyP50us, events.LatencyP99us)
	if poll.State != wire.StateDone || poll.Done != 40 {
		t.Fatalf("poll-mode job %+v", poll)
	}
	entries, err := os.ReadDir(filepath.Join(root, "arts", "jobs", poll.ID, "status"))
	if err != nil || len(entries) != 40 {
		t.Fatalf("status objects of the poll-mode job: %d, %v; want 40", len(entries), err)
	}
	if _, err := os.Stat(filepath.Join(root, "arts", "jobs", events.ID, "status")); err == nil {
		t.Errorf("the events-mode job wrote status objects")
	}
	if poll.LatencyP99us < 1000 || poll.LatencyP50us <= events.LatencyP50us {
		t.Errorf("poll-mode latency p50 %d us p99 %d us: not decided by the poller (events p50 %d us)", poll.LatencyP50us, poll.LatencyP99us, events.LatencyP50us)
	}
	if _, errOut, code := runEnv(t, env, "submit", "map", "--function", "noop", "--iterdata", "[1]", "--monitor", "sometimes"); code != 2 || !strings.Contains(errOut, "monitor") {
		t.Errorf("--monitor sometimes: exit %d, %s", code, errOut)
	}
}
