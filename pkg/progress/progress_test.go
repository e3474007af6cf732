package progress

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

func TestLinesDoNotFlood(t *testing.T) {
	var out testenv.Buffer
	interval := 100 * time.Millisecond
	r, err := New(&out, Config{Interval: interval}) // Auto on a buffer: lines
	if err != nil {
		t.Fatal(err)
	}
	const total = 10000
	start := time.Now()
	r.Update(wire.JobStatus{ID: "j1", State: wire.StatePending, Total: total})
	// 10,000 updates from 4 goroutines, as fast as they come, with one
	// failure in the middle; then keep updating for a few intervals so the
	// rate limit, not the speed of the loop, decides the count.
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < total; i += 4 {
				st := wire.JobStatus{ID: "j1", State: wire.StateRunning, Total: total, Done: i, Running: 8}
				if i > total/2 {
					st.Failed = 1
				}
				r.Update(st)
			}
		}(g)
	}
	wg.Wait()
	for time.Since(start) < 4*interval {
		r.Update(wire.JobStatus{ID: "j1", State: wire.StateRunning, Total: total, Done: total - 1, Failed: 1})
		time.Sleep(time.Millisecond)
	}
	r.Finish(wire.JobStatus{ID: "j1", State: wire.StateDone, Total: total, Done: total - 1, Failed: 1})
	elapsed := time.Since(start)

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	// one per interval, + pending, + running, + first failure, + finish, +1 for rounding.
	bound := int(elapsed/interval) + 5
	if len(lines) > bound {
		t.Errorf("%d lines in %v, want at most %d:\n%s", len(lines), elapsed, bound, out.String())
	}
	if len(lines) < 4 {
		t.Errorf("%d lines, want at least the pending, running, failure and final ones:\n%s", len(lines), out.String())
	}
	if r.Lines() != len(lines) {
		t.Errorf("Lines() = %d, counted %d", r.Lines(), len(lines))
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\x1b") {
			t.Errorf("plain line holds a control character: %q", l)
		}
		if !strings.HasPrefix(l, "job j1 ") {
			t.Errorf("line %q does not start with the job", l)
		}
	}
	if !strings.Contains(lines[0], "job j1 pending 0/10000 (0%)") {
		t.Errorf("first line = %q", lines[0])
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, "job j1 done 10000/10000 (100%) done 9999, running 0, failed 1, retried 0") {
		t.Errorf("last line = %q", last)
	}
	if strings.Contains(last, "ETA") {
		t.Errorf("a finished job has no ETA: %q", last)
	}
	// Updates after Finish are dropped.
	r.Update(wire.JobStatus{ID: "j1", State: wire.StateRunning})
	if r.Lines() != len(lines) {
		t.Errorf("an update after Finish wrote a line")
	}
}

func TestRateAndETA(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	r, err := New(&out, Config{Mode: Lines, Interval: 5 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// 10 tasks a second for 20 s, 400 in total.
	for s := 0; s <= 20; s++ {
		r.Update(wire.JobStatus{ID: "j", State: wire.StateRunning, Total: 400, Done: 10 * s, Running: 10})
		now = now.Add(time.Second)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// t=0 (first), then t=5,10,15,20.
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", len(lines), out.String())
	}
	want := "job j running 200/400 (50%) done 200, running 10, failed 0, retried 0, 10.0 tasks/s, ETA 20s, elapsed 20s"
	if lines[4] != want {
		t.Errorf("line at 20 s:\n got %q\nwant %q", lines[4], want)
	}
	if strings.Contains(lines[0], "tasks/s") {
		t.Errorf("first line has a rate with one sample: %q", lines[0])
	}
}

func TestBarRedraws(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(0, 0)
	r, err := New(&out, Config{Mode: Bar, Width: 10, Redraw: 100 * time.Millisecond, Label: "wc", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= 100; i++ { // 101 updates over 1 s: about 10 redraws
		r.Update(wire.JobStatus{ID: "j", State: wire.StateRunning, Total: 100, Done: i / 2, Failed: i / 50, Running: 10})
		now = now.Add(10 * time.Millisecond)
	}
	r.Finish(wire.JobStatus{ID: "j", State: wire.StateFailed, Total: 100, Done: 50, Failed: 2})
	s := out.String()
	if n := r.Lines(); n < 10 || n > 14 {
		t.Errorf("%d redraws for 1 s at 100 ms, want 10..14", n)
	}
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\x1b[K\n") {
		t.Errorf("bar output must end its single line with erase and newline: %q", s[max(0, len(s)-60):])
	}
	if strings.Count(s, "\r") != r.Lines() {
		t.Errorf("every redraw starts with a carriage return")
	}
	final := s[strings.LastIndex(s, "\r")+1:]
	if !strings.HasPrefix(final, "wc failed [#####x....] 52/100 (52%)") {
		t.Errorf("final bar = %q", final)
	}
}

func TestDrawBarBounds(t *testing.T) {
	for _, s := range []wire.JobStatus{
		{Total: 0}, {Total: 3, Done: 3, Running: 5}, {Total: 10, Failed: 10, Running: 3}, {Total: 7, Done: 2, Failed: 1, Running: 4},
	} {
		b := drawBar(s, 20)
		if len(b) != 22 {
			t.Errorf("drawBar(%+v) = %q: want 20 cells", s, b)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{Mode: 7, Interval: -1, Width: 500}.Validate()
	for _, w := range []string{"Mode", "Interval", "Width"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate error %v does not name %s", err, w)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// TestIsTerminal opens a real pseudo-terminal.
func TestIsTerminal(t *testing.T) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if testenv.CI() {
			t.Fatalf("no pseudo-terminals here: %v (CI machines have /dev/ptmx; a skip would hide the terminal test)", err)
		}
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptm.Close()
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	if !IsTerminal(pts) {
		t.Error("IsTerminal(pts) = false")
	}
	r, err := New(pts, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !r.bar {
		t.Error("Auto mode on a terminal did not choose the bar")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if IsTerminal(pw) || IsTerminal(&bytes.Buffer{}) {
		t.Error("a pipe or a buffer is not a terminal")
	}
}
