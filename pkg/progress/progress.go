package progress

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/skeinrun/skein/pkg/wire"
)

// Mode chooses how progress is drawn.
type Mode int

const (
	// Auto draws a bar when the writer is a terminal, lines otherwise.
	Auto Mode = iota
	// Bar redraws one line in place.
	Bar
	// Lines writes plain, rate-limited lines.
	Lines
)

// Config tunes a Reporter.
type Config struct {
	Mode Mode
	// Interval is the least time between two plain lines (Lines mode),
	// state changes and Finish excepted.
	Interval time.Duration
	// Redraw is the least time between two redraws in Bar mode.
	Redraw time.Duration
	// Window is the span the completion rate is measured over.
	Window time.Duration
	// Width is the bar's width in characters (Bar mode).
	Width int
	// Label prefixes every line; empty means "job <id>".
	Label string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig is Auto mode, a line every 10 s, redraws every 100 ms, a
// 10 s rate window and a 24-character bar.
func DefaultConfig() Config {
	return Config{Mode: Auto, Interval: 10 * time.Second, Redraw: 100 * time.Millisecond, Window: 10 * time.Second, Width: 24}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.Redraw == 0 {
		c.Redraw = d.Redraw
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.Width == 0 {
		c.Width = d.Width
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Mode < Auto || c.Mode > Lines {
		errs = append(errs, fmt.Errorf("progress: Mode %d is not Auto, Bar or Lines", c.Mode))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("progress: Interval %v is negative", c.Interval))
	}
	if c.Redraw < 0 {
		errs = append(errs, fmt.Errorf("progress: Redraw %v is negative", c.Redraw))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("progress: Window %v is negative", c.Window))
	}
	if c.Width < 0 || c.Width > 200 {
		errs = append(errs, fmt.Errorf("progress: Width %d is outside 0..200", c.Width))
	}
	return errors.Join(errs...)
}

// IsTerminal reports whether w is a terminal (a character device).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	if osf, ok := w.(*os.File); ok && osf == nil {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

type sample struct {
	at       time.Time
	finished int
}

// Reporter draws progress. Create it with New.
type Reporter struct {
	w   io.Writer
	cfg Config
	bar bool

	mu        sync.Mutex
	start     time.Time // first update
	last      time.Time // last line / redraw written
	lastState wire.JobState
	sawFail   bool
	samples   []sample
	cur       sample // the latest snapshot
	finished  bool
	lines     int
	err       error
}

// New returns a Reporter writing to w (normally os.Stderr).
func New(w io.Writer, cfg Config) (*Reporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &Reporter{w: w, cfg: cfg}
	switch cfg.Mode {
	case Bar:
		r.bar = true
	case Auto:
		r.bar = IsTerminal(w)
	}
	return r, nil
}

// Update takes a new snapshot and writes a line or redraws when due.
// Snapshots of another job than the first one seen are not checked: use one
// Reporter per job.
func (r *Reporter) Update(s wire.JobStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	now := r.cfg.Now()
	r.observe(now, s)
	due := now.Sub(r.last) >= r.interval()
	if s.State != r.lastState {
		due = true
	}
	if s.Failed > 0 && !r.sawFail {
		r.sawFail = true
		due = true
	}
	r.lastState = s.State
	if due || r.last.IsZero() {
		r.draw(now, s, false)
	}
}

// Finish writes the final snapshot unconditionally (and ends the bar's
// line). Later Updates are ignored.
func (r *Reporter) Finish(s wire.JobStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	now := r.cfg.Now()
	r.observe(now, s)
	r.draw(now, s, true)
	r.finished = true
}

// Lines is the number of lines (or redraws, in Bar mode) written so far.
func (r *Reporter) Lines() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lines
}

// Err is the first error the writer returned, if any. Progress output is
// best-effort: a failing writer does not stop a job.
func (r *Reporter) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Reporter) interval() time.Duration {
	if r.bar {
		return r.cfg.Redraw
	}
	return r.cfg.Interval
}

func (r *Reporter) observe(now time.Time, s wire.JobStatus) {
	if r.start.IsZero() {
		r.start = now
	}
	r.cur = sample{now, s.Done + s.Failed}
	// Keep a sample every Window/20, and one at or before the window's
	// start.
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= r.cfg.Window/20 {
		r.samples = append(r.samples, r.cur)
	}
	cut := 0
	for cut+1 < len(r.samples) && now.Sub(r.samples[cut+1].at) >= r.cfg.Window {
		cut++
	}
	if cut > 0 {
		r.samples = append(r.samples[:0], r.samples[cut:]...)
	}
}

// rate is finished tasks per second from the oldest kept sample to the
// latest snapshot, or 0 when unknown.
func (r *Reporter) rate(now time.Time) float64 {
	if len(r.samples) == 0 {
		return 0
	}
	first := r.samples[0]
	dt := r.cur.at.Sub(first.at).Seconds()
	if dt < 0.2 {
		return 0
	}
	return float64(r.cur.finished-first.finished) / dt
}

func (r *Reporter) draw(now time.Time, s wire.JobStatus, final bool) {
	var b strings.Builder
	label := r.cfg.Label
	if label == "" {
		label = "job " + s.ID
	}
	if r.bar {
		b.WriteString("\r")
	}
	b.WriteString(label)
	b.WriteString(" ")
	b.WriteString(string(s.State))
	if r.bar {
		b.WriteString(" ")
		b.WriteString(drawBar(s, r.cfg.Width))
	}
	fin := s.Done + s.Failed
	if s.Total > 0 {
		fmt.Fprintf(&b, " %d/%d (%.0f%%)", fin, s.Total, 100*float64(fin)/float64(s.Total))
	} else {
		fmt.Fprintf(&b, " %d finished", fin)
	}
	fmt.Fprintf(&b, " done %d, running %d, failed %d, retried %d", s.Done, s.Running, s.Failed, s.Retried)
	if s.Stopped > 0 {
		fmt.Fprintf(&b, ", stopped %d", s.Stopped)
	}
	elapsed := now.Sub(r.start)
	if s.Submitted > 0 {
		if e := now.Sub(time.Unix(0, s.Submitted)); e > 0 {
			elapsed = e
		}
	}
	if s.Ended > 0 && s.Submitted > 0 {
		elapsed = time.Duration(s.Ended - s.Submitted)
	}
	rate := r.rate(now)
	if rate > 0 {
		fmt.Fprintf(&b, ", %s tasks/s", fmtRate(rate))
		if !s.State.Terminal() && s.Total > fin {
			eta := time.Duration(float64(s.Total-fin) / rate * float64(time.Second))
			fmt.Fprintf(&b, ", ETA %s", fmtDur(eta))
		}
	}
	fmt.Fprintf(&b, ", elapsed %s", fmtDur(elapsed))
	if r.bar {
		b.WriteString("\x1b[K")
		if final {
			b.WriteString("\n")
		}
	} else {
		b.WriteString("\n")
	}
	if _, err := io.WriteString(r.w, b.String()); err != nil && r.err == nil {
		r.err = err
	}
	r.last = now
	r.lines++
}

func drawBar(s wire.JobStatus, width int) string {
	if width <= 0 {
		return ""
	}
	var done, failed, running int
	if s.Total > 0 {
		done = s.Done * width / s.Total
		failed = s.Failed * width / s.Total
		running = s.Running * width / s.Total
		if s.Failed > 0 && failed == 0 {
			failed = 1
		}
	}
	for done+failed+running > width {
		switch {
		case running > 0:
			running--
		case done > 0:
			done--
		default:
			failed--
		}
	}
	return "[" + strings.Repeat("#", done) + strings.Repeat("x", failed) +
		strings.Repeat(">", running) + strings.Repeat(".", width-done-failed-running) + "]"
}

func fmtRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
