package plot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// synthJob makes the events of a map-reduce job of n map tasks run by 64
// workers: 0-500 ms sleeps, about 2% of first attempts failing and retried,
// a streaming reducer receiving every map result a little after it is done.
func synthJob(n int, seed uint64) Input {
	rng := rand.New(rand.NewPCG(seed, 7))
	const ms = int64(time.Millisecond)
	submit := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC).UnixNano()
	queued := submit + 5*ms
	workers := make([]int64, 64) // next free time per worker
	for i := range workers {
		workers[i] = queued + int64(i)*ms
	}
	var evs []wire.Event
	var arrivals []int64
	var lastMap int64
	type pending struct{ task, attempt int }
	queue := make([]pending, n)
	for i := range queue {
		queue[i] = pending{i, 1}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		w := 0
		for i := range workers {
			if workers[i] < workers[w] {
				w = i
			}
		}
		start := workers[w] + int64(rng.IntN(3))*ms
		end := start + int64(rng.IntN(500))*ms + ms
		workers[w] = end + int64(rng.IntN(2))*ms
		base := wire.Event{Job: "wc-1", Task: p.task, Kind: wire.TaskMap, Attempt: p.attempt, Worker: fmt.Sprintf("w%d", w), Queued: queued, Started: start}
		st := base
		st.Type = wire.EventStarted
		evs = append(evs, st)
		fin := base
		fin.Finished = end
		fin.PeakKB = 20000 + int64(rng.IntN(30000))
		if p.attempt == 1 && rng.IntN(50) == 0 {
			fin.Type = wire.EventFailed
			fin.Error = &wire.TaskError{Kind: wire.ErrUser, Type: "ValueError", Message: "bad <line> & co", Retryable: true}
			queue = append(queue, pending{p.task, 2})
		} else {
			fin.Type = wire.EventDone
			arrivals = append(arrivals, end+ms/2+int64(rng.IntN(300))*1000)
			lastMap = max(lastMap, end)
		}
		evs = append(evs, fin)
	}
	rs := max(lastMap-2000*ms, queued)
	red := wire.Event{Job: "wc-1", Task: 0, Kind: wire.TaskReduce, Attempt: 1, Type: wire.EventDone, Worker: "w0", Queued: queued, Started: rs, Finished: lastMap + 3*ms}
	evs = append(evs, red)
	// Delivery is at least once: a duplicate done event changes nothing.
	evs = append(evs, evs[1])
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return Input{
		Status: wire.JobStatus{ID: "wc-1", Kind: wire.JobMapReduce, State: wire.StateDone, Total: n + 1, Done: n + 1,
			Submitted: submit, Ended: lastMap + 4*ms},
		Events:        evs,
		ReducerInputs: arrivals,
		Title:         "wordcount, 1,000 maps",
	}
}

func TestAttempts(t *testing.T) {
	evs := []wire.Event{
		{Job: "j", Task: 1, Attempt: 1, Type: wire.EventStarted, Queued: 10, Started: 20, Worker: "a"},
		{Job: "j", Task: 1, Attempt: 1, Type: wire.EventFailed, Started: 20, Finished: 50, Error: &wire.TaskError{Kind: wire.ErrTimeout, Message: "slow"}},
		{Job: "j", Task: 1, Attempt: 2, Type: wire.EventDone, Queued: 60, Started: 70, Finished: 90, PeakKB: 5},
		{Job: "j", Task: 0, Attempt: 1, Type: wire.EventFailed, Started: 5, Finished: 6},
		{Job: "j", Task: 2, Attempt: 1, Type: wire.EventStarted, Started: 30},
		{Job: "j", Task: 0, Kind: wire.TaskReduce, Attempt: 1, Type: wire.EventDone, Started: 80, Finished: 95},
		{Job: "other", Task: 3, Attempt: 1, Type: wire.EventDone},
	}
	got := Attempts("j", evs)
	want := []struct {
		task, attempt int
		kind          wire.TaskKind
		state         State
		dur           time.Duration
	}{
		{0, 1, "", Failed, 1},
		{1, 1, "", Retried, 30},
		{1, 2, "", Done, 20},
		{2, 1, "", Running, 0},
		{0, 1, wire.TaskReduce, Done, 15},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d attempts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Task != w.task || g.Attempt != w.attempt || g.Kind != w.kind || g.State != w.state || g.Duration() != w.dur {
			t.Errorf("attempt %d = %+v, want %+v", i, g, w)
		}
	}
	if got[1].Worker != "a" || got[1].Queued != 10 || got[1].Error != "timeout: slow" {
		t.Errorf("merged attempt = %+v", got[1])
	}
}

func TestSummary(t *testing.T) {
	in := synthJob(1000, 1)
	atts := Attempts("wc-1", in.Events)
	s := Summarize(in, atts)
	if s.Tasks != 1001 || s.Done != s.Attempts-s.Retried || s.Retried == 0 || s.Failed != 0 || s.Running != 0 {
		t.Errorf("summary counts: %+v", s)
	}
	if s.Workers != 64 || s.ReducerInputs != 1000 || s.P50 <= 100*time.Millisecond || s.P50 >= 400*time.Millisecond || s.P99 < s.P90 || s.Max < s.P99 || s.Max > 501*time.Millisecond || s.Reduce < time.Second {
		t.Errorf("summary numbers: workers %d inputs %d p50 %v p90 %v p99 %v max %v", s.Workers, s.ReducerInputs, s.P50, s.P90, s.P99, s.Max)
	}
	if s.LastMapToEnd != 4*time.Millisecond {
		t.Errorf("last map → end = %v", s.LastMapToEnd)
	}
}

var (
	barRE  = regexp.MustCompile(`<rect class="bar (done|failed|retried|running)" data-task="(\d+)"`)
	jsonRE = regexp.MustCompile(`<title>CHECK (\{.*\})</title>`)
)

func TestWriteElements(t *testing.T) {
	in := synthJob(1000, 2)
	var buf bytes.Buffer
	if err := Write(&buf, in); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	bars := barRE.FindAllStringSubmatch(page, -1)
	tasks := map[string]bool{}
	retried := 0
	for _, m := range bars {
		tasks[m[2]] = true
		if m[1] == "retried" {
			retried++
		}
	}
	// 1,000 map tasks + the reducer (task 0 of kind reduce shares the
	// data-task value 0).
	if len(tasks) != 1000 || len(bars) != 1001+retried || retried == 0 {
		t.Errorf("%d bars over %d tasks with %d retried", len(bars), len(tasks), retried)
	}
	for _, forbidden := range []string{"<script", "http://", "https://", "@import", "url(", "<link", "<img"} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), forbidden) {
			t.Errorf("plot is not self-contained: it holds %q", forbidden)
		}
	}
	if !strings.Contains(page, "bad &lt;line&gt; &amp; co") || strings.Contains(page, "bad <line>") {
		t.Error("error text is not escaped")
	}
	for _, want := range []string{`data-mode="elements"`, "time since submit (s)", "reducer input arrives", `class="arrival"`, "duration p50 / p90 / p99 / max", `class="hbin done"`} {
		if !strings.Contains(page, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
	if n := len(page); n > 600<<10 {
		t.Errorf("1,000-task plot is %d KiB", n>>10)
	}
}

func TestWriteCompactLargeJob(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("100,000 tasks")
	}
	in := synthJob(100000, 3)
	start := time.Now()
	var cw countWriter
	if err := Write(&cw, in); err != nil {
		t.Fatal(err)
	}
	t.Logf("100,000 tasks: %.1f MiB in %v", float64(cw.n)/(1<<20), time.Since(start))
	if cw.n > 8<<20 {
		t.Errorf("100,000-task plot is %.1f MiB, want under 8", float64(cw.n)/(1<<20))
	}
	if !bytes.Contains(cw.head.Bytes(), []byte(`data-attempts="`)) || !bytes.Contains(cw.head.Bytes(), []byte(`data-mode="compact"`)) {
		t.Errorf("large plot is not compact: %s", cw.head.String()[:min(cw.head.Len(), 2000)])
	}
}

type countWriter struct {
	n    int
	head bytes.Buffer
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	if c.head.Len() < 64<<10 {
		c.head.Write(p[:min(len(p), 64<<10)])
	}
	return len(p), nil
}

func TestEmptyJob(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, Input{Status: wire.JobStatus{ID: "empty", State: wire.StatePending}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "No finished attempts.") || !strings.HasSuffix(buf.String(), "</html>\n") {
		t.Errorf("empty plot: %s", buf.String())
	}
	if err := Write(io.Discard, Input{Status: wire.JobStatus{ID: "x", Total: -1}}); err == nil {
		t.Error("negative total accepted")
	}
}

// checkScript runs in Chromium after the plot: it counts what was rendered
// and writes the result into the title, which --dump-dom prints.
const checkScript = `<script>
(function(){
  var errs = [];
  window.addEventListener('error', function(e){ errs.push(String(e.message || e.type)); }, true);
  window.addEventListener('load', function(){
    var svg = document.querySelector('svg.timeline');
    var bars = document.querySelectorAll('svg.timeline rect.bar');
    var tasks = {};
    var drawn = 0;
    bars.forEach(function(b){ tasks[b.getAttribute('data-task')] = 1; var bb = b.getBBox(); if (bb.width > 0 && bb.height > 0) drawn++; });
    var box = svg.getBoundingClientRect();
    var r = {bars: bars.length, drawn: drawn, tasks: Object.keys(tasks).length,
      arrivals: document.querySelectorAll('svg.timeline .arrival').length,
      hbins: document.querySelectorAll('svg.histogram rect.hbin').length,
      width: Math.round(box.width), height: Math.round(box.height),
      resources: performance.getEntriesByType('resource').length, errors: errs};
    var t = document.createElement('title'); t.textContent = 'CHECK ' + JSON.stringify(r);
    document.body.appendChild(t);
  });
})();
</script>
`

// TestChromium opens a 1,000-task plot in headless Chromium, checks the
// rendered DOM, and takes a screenshot whose pixels must show the bars.
func TestChromium(t *testing.T) {
	t.Parallel()
	chromium := testenv.Require(t, "SKEIN_TEST_CHROMIUM")
	dir := t.TempDir()
	in := synthJob(1000, 4)
	var buf bytes.Buffer
	if err := Write(&buf, in); err != nil {
		t.Fatal(err)
	}
	plotPath := filepath.Join(dir, "plot.html")
	if err := os.WriteFile(plotPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The check page is the plot with the counting script before </body>.
	checkPath := filepath.Join(dir, "check.html")
	check := strings.Replace(buf.String(), "</body>", checkScript+"</body>", 1)
	if err := os.WriteFile(checkPath, []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}
	wantBars := len(barRE.FindAllString(buf.String(), -1))

	dom, logs := runChromium(t, chromium, dir, "--dump-dom", "file://"+checkPath)
	m := jsonRE.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the check script did not run; DOM tail: %s\nchromium log:\n%s", tail(dom, 1500), tail(logs, 3000))
	}
	t.Logf("rendered: %s", m[1])
	var r struct {
		Bars, Drawn, Tasks, Arrivals, Hbins, Width, Height, Resources int
		Errors                                                        []string
	}
	if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Tasks != 1000 || r.Bars != wantBars || r.Drawn != r.Bars {
		t.Errorf("rendered %d bars (%d with a non-empty box) over %d tasks; want %d bars over 1000 tasks", r.Bars, r.Drawn, r.Tasks, wantBars)
	}
	if r.Arrivals != 1000 || r.Hbins == 0 || r.Width < 500 || r.Height < 200 {
		t.Errorf("rendered %+v", r)
	}
	if len(r.Errors) > 0 || r.Resources != 0 {
		t.Errorf("page errors %v, %d resources loaded (want none)", r.Errors, r.Resources)
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Uncaught") {
			t.Errorf("console message: %s", l)
		}
	}

	// The plot itself, as a user sees it, and the same job drawn compactly
	// (one path per state, as for very large jobs): both must show the
	// bars.
	shot := filepath.Join(dir, "plot.png")
	green, orange := screenshot(t, chromium, dir, plotPath, shot)
	if green < 20000 || orange < 20 {
		t.Errorf("screenshot shows %d done-green and %d retried-orange pixels: bars are not drawn", green, orange)
	}
	in.MaxElements = -1
	buf.Reset()
	if err := Write(&buf, in); err != nil {
		t.Fatal(err)
	}
	compactPath := filepath.Join(dir, "compact.html")
	if err := os.WriteFile(compactPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cg, co := screenshot(t, chromium, dir, compactPath, filepath.Join(dir, "compact.png"))
	if cg < green/2 || co < 20 {
		t.Errorf("compact plot shows %d green and %d orange pixels (element plot: %d, %d)", cg, co, green, orange)
	}
	if keep := os.Getenv("SKEIN_PLOT_KEEP"); keep != "" {
		for _, p := range []string{plotPath, shot} {
			data, _ := os.ReadFile(p)
			if err := os.WriteFile(filepath.Join(keep, filepath.Base(p)), data, 0o644); err != nil {
				t.Error(err)
			}
		}
	}
}

// screenshot renders page to a PNG and counts the pixels in the done
// (green) and retried (orange) colours.
func screenshot(t *testing.T, chromium, dir, page, shot string) (green, orange int) {
	t.Helper()
	runChromium(t, chromium, dir, "--screenshot="+shot, "--window-size=1100,1250", "--hide-scrollbars", "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if g > 90 && g < 160 && r < 90 && bl < 90 {
				green++
			}
			if r > 200 && g > 110 && g < 170 && bl < 60 {
				orange++
			}
		}
	}
	t.Logf("%s %v: %d green, %d orange pixels", filepath.Base(shot), b.Size(), green, orange)
	return green, orange
}

func runChromium(t *testing.T, bin, dir string, args ...string) (stdout, logs string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
		"--user-data-dir=" + filepath.Join(dir, "profile-"+strconv.Itoa(int(time.Now().UnixNano()%1e6)))}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(errb.String(), 3000))
	}
	return out.String(), errb.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// FuzzWrite feeds events built from arbitrary bytes (events come from
// runtimes: outside input): Write must not fail or panic, and the page must
// stay one well-formed document whose every bar has a state class.
func FuzzWrite(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, int64(0), 3)
	f.Add([]byte("\xff\x00\x10<script>&"), int64(-5), 0)
	f.Fuzz(func(t *testing.T, data []byte, submitted int64, total int) {
		if total < 0 || total > 1000 {
			total = 0
		}
		var evs []wire.Event
		for i := 0; i+5 <= len(data) && len(evs) < 200; i += 5 {
			d := data[i : i+5]
			ev := wire.Event{Job: "j", Task: int(d[0]) - 8, Attempt: int(d[1] % 4), Kind: []wire.TaskKind{"", wire.TaskMap, wire.TaskReduce, "x"}[d[1]>>6],
				Type:   []wire.EventType{wire.EventStarted, wire.EventDone, wire.EventFailed, "bogus"}[d[2]%4],
				Queued: int64(d[3]) * 1e6, Started: int64(d[3]+d[4]) * 1e6, Finished: int64(d[4]) * 3e6, Worker: string(d[2:4])}
			if d[2]&0x80 != 0 {
				ev.Error = &wire.TaskError{Message: string(d)}
			}
			evs = append(evs, ev)
		}
		var buf bytes.Buffer
		in := Input{Status: wire.JobStatus{ID: "j", Total: total, Submitted: submitted}, Events: evs, ReducerInputs: []int64{submitted, 5e6}}
		if len(data)%2 == 1 {
			in.MaxElements = -1
		}
		if err := Write(&buf, in); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		if strings.Count(page, "<svg") != strings.Count(page, "</svg>") || !strings.HasSuffix(page, "</html>\n") || strings.Contains(page, "<script") {
			t.Fatalf("malformed page:\n%s", page)
		}
		if strings.Contains(page, "NaN") || strings.Contains(page, "Inf") {
			t.Fatalf("page holds NaN or Inf coordinates")
		}
	})
}
