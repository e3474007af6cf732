package dashboard_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/dashboard"
	"github.com/skeinrun/skein/pkg/wire"
)

// pixels counts the pixels of a PNG in the timeline's done (green) and
// running (blue) colours.
func pixels(t *testing.T, shot []byte) (green, blue int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if g > 100 && g < 145 && r < 70 && bl < 70 {
				green++
			}
			if bl > 170 && r < 60 && g > 80 && g < 120 {
				blue++
			}
		}
	}
	return green, blue
}

// keep writes a screenshot to $SKEIN_DASHBOARD_KEEP (docs/img when the
// pictures in the docs are renewed).
func keep(t *testing.T, name string, shot []byte) {
	if dir := os.Getenv("SKEIN_DASHBOARD_KEEP"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestChromium drives the page in headless Chromium while a 240-task job
// runs on a real runtime: the job appears in the list and its progress
// advances there; its page draws the timeline's bars as events arrive,
// shows the panic of task 7's first attempt with the stack its runtime
// sent, and ends with every task done. The page is read-only without the
// token (no cancel button); after /login with the token, the cancel
// button shows and cancels a running job.
func TestChromium(t *testing.T) {
	bin := testenv.Require(t, testenv.Chromium)
	s := newStack(t, dashboard.Auth{Token: token}, 4)
	b := startBrowser(t, bin, 1100, 900)
	const n = 240
	id := s.submit(t, n)

	// The list: the job appears, running, and its progress advances.
	b.navigate(s.url+"/", s.url+"/")
	row := `document.querySelector('tr[data-job="` + id + `"]')`
	b.waitFor(row+` && `+row+`.dataset.state === 'running' && +`+row+`.dataset.done > 0`, 30*time.Second)
	var first int
	if err := b.eval("+"+row+".dataset.done", &first); err != nil {
		t.Fatal(err)
	}
	b.waitFor("+"+row+".dataset.done > "+jsInt(first), 30*time.Second)
	keep(t, "dashboard-list.png", b.screenshot())
	var cells []string
	if err := b.eval(`[...`+row+`.cells].map(c => c.innerText)`, &cells); err != nil {
		t.Fatal(err)
	}
	t.Logf("list row: %q", cells)
	if len(cells) != 7 || cells[1] != "running" || cells[2] != "step" {
		t.Errorf("list row %q", cells)
	}

	// The job's page, while it runs: bars are drawn and their number
	// grows; progress advances; task 7's traceback shows.
	b.navigate(s.url+"/jobs/"+id, s.url+"/jobs/"+id)
	canvas := `document.getElementById('timeline')`
	b.waitFor(`+`+canvas+`.dataset.bars > 0 && document.getElementById('main').dataset.state === 'running'`, 30*time.Second)
	var bars0, done0 int
	_ = b.eval("+"+canvas+".dataset.bars", &bars0)
	_ = b.eval("+document.getElementById('main').dataset.done", &done0)
	b.waitFor(`+`+canvas+`.dataset.bars > `+jsInt(bars0)+` && +document.getElementById('main').dataset.done > `+jsInt(done0), 30*time.Second)
	var hidden bool
	if err := b.eval(`document.getElementById('cancel').hidden`, &hidden); err != nil || !hidden {
		t.Errorf("the cancel button shows to a caller without the token (hidden=%v, %v)", hidden, err)
	}
	b.waitFor(`document.querySelector('.failure[data-task="7"] pre.stack')`, 30*time.Second)
	var trace struct{ What, Msg, Stack string }
	if err := b.eval(`(() => { const f = document.querySelector('.failure[data-task="7"]'); return {What: f.querySelector('.what').innerText, Msg: f.querySelector('.msg').innerText, Stack: f.querySelector('pre.stack').innerText}; })()`, &trace); err != nil {
		t.Fatal(err)
	}
	if trace.Msg != "panic: boom at 7" || !bytes.Contains([]byte(trace.Stack), []byte("dashboard_test.explode")) {
		t.Errorf("task 7's failure shows %+v; want the panic and the Go stack with explode", trace)
	}
	mid := b.screenshot()
	if g, bl := pixels(t, mid); g < 500 || bl < 20 {
		t.Errorf("mid-job screenshot: %d done-green and %d running-blue pixels: bars are not drawn", g, bl)
	}
	keep(t, "dashboard-job-running.png", mid)

	// The end: every task done, one bar per attempt (240 + the retry).
	b.waitFor(`document.getElementById('main').dataset.ended === 'true'`, 60*time.Second)
	var end struct {
		State         string
		Done, Bars    int
		Running, Fail int
	}
	if err := b.eval(`({State: document.getElementById('main').dataset.state, Done: +document.getElementById('main').dataset.done,
		Bars: +`+canvas+`.dataset.bars, Running: +`+canvas+`.dataset.running, Fail: document.querySelectorAll('.failure').length})`, &end); err != nil {
		t.Fatal(err)
	}
	if end.State != "done" || end.Done != n || end.Bars != n+1 || end.Running != 0 || end.Fail != 1 {
		t.Errorf("at the end the page shows %+v; want done, %d done, %d bars, none running, 1 failure", end, n, n+1)
	}
	final := b.screenshot()
	if g, _ := pixels(t, final); g < 2000 {
		t.Errorf("final screenshot: %d done-green pixels", g)
	}
	keep(t, "dashboard-job-done.png", final)

	// With the token: the cancel button shows and cancels a running job.
	id2 := s.submit(t, 2000)
	b.navigate(s.url+"/login?token="+token, s.url+"/")
	b.navigate(s.url+"/jobs/"+id2, s.url+"/jobs/"+id2)
	btn := `document.getElementById('cancel')`
	b.waitFor(`document.getElementById('main').dataset.state === 'running' && !`+btn+`.hidden`, 30*time.Second)
	if err := b.eval(btn+`.click(); `+btn+`.click()`, nil); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`document.getElementById('main').dataset.state === 'cancelled' && `+btn+`.hidden`, 30*time.Second)
	if st, err := s.c.Status(id2); err != nil || st.State != wire.StateCancelled {
		t.Errorf("the job is %v (%v) after the cancel button", st.State, err)
	}

	// A map-reduce job: the reducer's input arrivals are drawn.
	mr, err := s.cl.Submit(context.Background(), &wire.JobSpec{Kind: wire.JobMapReduce, Function: "step", Iterdata: iterdata(30), ReduceFunction: "sum"})
	if err != nil {
		t.Fatal(err)
	}
	b.navigate(s.url+"/jobs/"+mr, s.url+"/jobs/"+mr)
	b.waitFor(`document.getElementById('main').dataset.ended === 'true'`, 60*time.Second)
	var arr int
	if err := b.eval(`+`+canvas+`.dataset.arrivals`, &arr); err != nil || arr != 30 {
		t.Errorf("the map-reduce job's page drew %d reducer arrivals (%v), want 30", arr, err)
	}

	// A job this coordinator does not hold.
	b.navigate(s.url+"/jobs/nosuchjob", s.url+"/jobs/nosuchjob")
	b.waitFor(`document.getElementById('unknown')?.innerText.includes('holds no job nosuchjob')`, 30*time.Second)

	// Nothing was fetched from anywhere else.
	var foreign []string
	if err := b.eval(`performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))`, &foreign); err != nil || len(foreign) > 0 {
		t.Errorf("resources from elsewhere: %v (%v)", foreign, err)
	}
	// On a phone's width the pages fit the screen (no sideways scroll).
	b.setViewport(390, 844)
	for _, p := range []string{"/", "/jobs/" + id} {
		b.navigate(s.url+p, s.url+p)
		b.waitFor(`document.querySelector('tr[data-job]') || +document.getElementById('timeline')?.dataset.bars > 0`, 30*time.Second)
		var w int
		if err := b.eval(`document.documentElement.scrollWidth`, &w); err != nil || w > 390 {
			t.Errorf("%s on a 390 px wide screen is %d px wide (%v)", p, w, err)
		}
		if p != "/" {
			keep(t, "dashboard-job-phone.png", b.screenshot())
		}
	}
	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("page errors: %v", errs)
	}
}

func jsInt(n int) string { return strconv.Itoa(n) }
