package plot

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/wire"
)

// DefaultMaxElements is the number of attempts up to which every bar is its
// own element.
const DefaultMaxElements = 5000

// Input is what a plot is drawn from.
type Input struct {
	// Status is the job's status; its Submitted time is the plot's zero
	// (the earliest timestamp in Events when it is 0).
	Status wire.JobStatus
	// Events are the job's task events in any order: started, done and
	// failed events of every attempt. Events of another job than Status.ID
	// are ignored.
	Events []wire.Event
	// ReducerInputs are the unix-ns times at which the reducer received
	// map results (optional).
	ReducerInputs []int64
	// Title heads the page; empty means "job <id>".
	Title string
	// MaxElements is the number of attempts above which bars are drawn as
	// one path per state; 0 means DefaultMaxElements, negative means always.
	MaxElements int
}

// State is an attempt's outcome as drawn.
type State string

const (
	Done    State = "done"
	Failed  State = "failed"
	Retried State = "retried" // failed, then tried again
	Running State = "running" // started, no end seen
	Queued  State = "queued"  // queued, not started
)

var states = []State{Done, Retried, Failed, Running, Queued}

var colours = map[State]string{
	Done:    "#2e7d32",
	Failed:  "#c62828",
	Retried: "#ef8f00",
	Running: "#1565c0",
	Queued:  "#b0bec5",
}

const (
	waitColour    = "#d5dde5"
	arrivalColour = "#6a1b9a"
)

// Attempt is one task attempt rebuilt from its events.
type Attempt struct {
	Kind     wire.TaskKind
	Task     int
	Attempt  int
	Worker   string
	Queued   int64
	Started  int64
	Finished int64
	PeakKB   int64
	State    State
	Error    string
}

// Duration is Finished - Started, or 0 when either is missing.
func (a Attempt) Duration() time.Duration {
	if a.Started == 0 || a.Finished == 0 || a.Finished < a.Started {
		return 0
	}
	return time.Duration(a.Finished - a.Started)
}

type attemptKey struct {
	kind    wire.TaskKind
	task    int
	attempt int
}

// Attempts rebuilds the attempts of job from its events (all jobs when job
// is ""), sorted by kind (maps first), task and attempt.
func Attempts(job string, events []wire.Event) []Attempt {
	idx := make(map[attemptKey]int)
	var out []Attempt
	for _, e := range events {
		if job != "" && e.Job != job || e.Task < 0 {
			continue
		}
		k := attemptKey{e.Kind, e.Task, e.Attempt}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Attempt{Kind: e.Kind, Task: e.Task, Attempt: e.Attempt, State: Queued})
		}
		a := &out[i]
		if e.Queued > 0 && (a.Queued == 0 || e.Queued < a.Queued) {
			a.Queued = e.Queued
		}
		if e.Started > 0 && (a.Started == 0 || e.Started < a.Started) {
			a.Started = e.Started
		}
		if e.Worker != "" {
			a.Worker = e.Worker
		}
		if e.PeakKB > a.PeakKB {
			a.PeakKB = e.PeakKB
		}
		switch e.Type {
		case wire.EventStarted:
			if a.State == Queued {
				a.State = Running
			}
		case wire.EventDone:
			a.State = Done // the first terminal event wins, but done beats failed
			if e.Finished > 0 {
				a.Finished = e.Finished
			}
			a.Error = ""
		case wire.EventFailed:
			if a.State != Done {
				a.State = Failed
				if e.Finished > 0 {
					a.Finished = e.Finished
				}
				if e.Error != nil {
					a.Error = e.Error.Error()
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Kind == wire.TaskReduce) != (b.Kind == wire.TaskReduce) {
			return b.Kind == wire.TaskReduce
		}
		if a.Task != b.Task {
			return a.Task < b.Task
		}
		return a.Attempt < b.Attempt
	})
	// A failed attempt followed by another attempt of the same task was
	// retried.
	for i := 0; i+1 < len(out); i++ {
		a, b := &out[i], out[i+1]
		if a.State == Failed && a.Task == b.Task && (a.Kind == wire.TaskReduce) == (b.Kind == wire.TaskReduce) {
			a.State = Retried
		}
	}
	return out
}

// Summary is the numbers under the plot.
type Summary struct {
	Tasks, Attempts                     int
	Done, Failed, Retried, Running      int
	Wall                                time.Duration
	P50, P90, P99, Max                  time.Duration // map (and call) attempt durations
	Reduce                              time.Duration // the longest reduce attempt
	WaitP50, WaitP99                    time.Duration // queued -> started
	Workers                             int
	PeakKB                              int64
	ReducerInputs                       int
	FirstStart, LastFinish              time.Duration // since zero
	LastMapToEnd                        time.Duration // last map finished -> job end (0 if unknown)
	durations, waits                    []time.Duration
	zero, end                           int64
	mapRows, reduceRows                 int
	reduceRowBase                       int
	arrivals                            []int64
	hasReduce                           bool
	stateCount                          map[State]int
	attemptsByState                     map[State][]int
	title, job, kind, jobState, jobNote string
}

// Summarize computes the plot's numbers.
func Summarize(in Input, atts []Attempt) Summary {
	s := Summary{Attempts: len(atts), stateCount: map[State]int{}, attemptsByState: map[State][]int{}}
	st := in.Status
	s.zero = st.Submitted
	minT, maxT := int64(math.MaxInt64), int64(0)
	see := func(t int64) {
		if t > 0 {
			minT = min(minT, t)
			maxT = max(maxT, t)
		}
	}
	workers := map[string]bool{}
	var lastMap int64
	for i, a := range atts {
		see(a.Queued)
		see(a.Started)
		see(a.Finished)
		if a.Worker != "" {
			workers[a.Worker] = true
		}
		s.PeakKB = max(s.PeakKB, a.PeakKB)
		s.stateCount[a.State]++
		s.attemptsByState[a.State] = append(s.attemptsByState[a.State], i)
		if d := a.Duration(); a.Finished > 0 && a.Started > 0 {
			if a.Kind == wire.TaskReduce {
				s.Reduce = max(s.Reduce, d)
			} else {
				s.durations = append(s.durations, d)
			}
		}
		if a.Queued > 0 && a.Started >= a.Queued {
			s.waits = append(s.waits, time.Duration(a.Started-a.Queued))
		}
		if a.Kind == wire.TaskReduce {
			s.hasReduce = true
			s.reduceRows = max(s.reduceRows, a.Task+1)
		} else {
			s.mapRows = max(s.mapRows, a.Task+1)
			if a.Finished > lastMap && (a.State == Done || a.State == Failed) {
				lastMap = a.Finished
			}
		}
	}
	for _, t := range in.ReducerInputs {
		if t > 0 {
			see(t)
			s.arrivals = append(s.arrivals, t)
		}
	}
	see(st.Ended)
	if s.zero <= 0 {
		s.zero = minT
	}
	if maxT == 0 || s.zero == math.MaxInt64 {
		s.zero, maxT = 0, 0
	}
	s.end = max(maxT, s.zero)
	if st.Kind != wire.JobMapReduce && st.Total > s.mapRows && !s.hasReduce {
		s.mapRows = st.Total
	}
	s.reduceRowBase = s.mapRows
	s.Tasks = max(st.Total, s.mapRows+s.reduceRows)
	s.Done, s.Failed, s.Retried, s.Running = s.stateCount[Done], s.stateCount[Failed], s.stateCount[Retried], s.stateCount[Running]
	s.Workers = len(workers)
	s.ReducerInputs = len(s.arrivals)
	s.Wall = time.Duration(s.end - s.zero)
	if st.Ended > 0 && st.Submitted > 0 {
		s.Wall = time.Duration(st.Ended - st.Submitted)
		if lastMap > 0 && s.hasReduce {
			s.LastMapToEnd = time.Duration(st.Ended - lastMap)
		}
	}
	sort.Slice(s.durations, func(i, j int) bool { return s.durations[i] < s.durations[j] })
	sort.Slice(s.waits, func(i, j int) bool { return s.waits[i] < s.waits[j] })
	s.P50, s.P90, s.P99 = quantile(s.durations, 0.5), quantile(s.durations, 0.9), quantile(s.durations, 0.99)
	if n := len(s.durations); n > 0 {
		s.Max = s.durations[n-1]
	}
	s.WaitP50, s.WaitP99 = quantile(s.waits, 0.5), quantile(s.waits, 0.99)
	s.job, s.kind, s.jobState = st.ID, string(st.Kind), string(st.State)
	s.title = in.Title
	if s.title == "" {
		s.title = "job " + st.ID
	}
	return s
}

// quantile is the nearest-rank quantile of sorted values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	return stats.Sorted(sorted, q*100)
}

// Write draws the plot of in as an HTML page on w.
func Write(w io.Writer, in Input) error {
	if in.Status.Total < 0 {
		return fmt.Errorf("plot: job %q: total %d is negative", in.Status.ID, in.Status.Total)
	}
	atts := Attempts(in.Status.ID, in.Events)
	s := Summarize(in, atts)
	maxEl := in.MaxElements
	if maxEl == 0 {
		maxEl = DefaultMaxElements
	}
	compact := maxEl < 0 || len(atts) > maxEl
	bw := bufio.NewWriterSize(w, 64<<10)
	p := &page{w: bw, s: &s, atts: atts, compact: compact}
	p.write()
	if p.err != nil {
		return fmt.Errorf("plot: job %q: %w", in.Status.ID, p.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("plot: job %q: %w", in.Status.ID, err)
	}
	return nil
}

// page writes the HTML; the first write error sticks.
type page struct {
	w       *bufio.Writer
	s       *Summary
	atts    []Attempt
	compact bool
	err     error
}

func (p *page) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *page) str(s string) {
	if p.err == nil {
		_, p.err = p.w.WriteString(s)
	}
}

const css = `body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:16px 24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 4px}
.sub{color:#555;font-size:13px;margin-bottom:8px}
svg{display:block;max-width:100%;height:auto}
svg text{font-size:11px;fill:#333}
.axis line,.axis path{stroke:#666;stroke-width:1;fill:none}
.grid line{stroke:#e4e8ec;stroke-width:1}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;margin:4px 0 6px}
.legend span{display:inline-flex;align-items:center;gap:5px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px}
table.summary{border-collapse:collapse;font-size:13px}
table.summary td{padding:2px 14px 2px 0}table.summary td:first-child{color:#555}
`

func (p *page) write() {
	s := p.s
	p.str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	p.printf("<title>%s</title>\n", esc(s.title+" · skein plot"))
	p.str("<style>\n" + css + "</style>\n</head>\n<body>\n")
	p.printf("<h1>%s</h1>\n", esc(s.title))
	p.printf("<div class=\"sub\">%s job <b>%s</b>, %s · %d tasks, %d attempts · wall time %s</div>\n",
		esc(nz(s.kind, "?")), esc(s.job), esc(nz(s.jobState, "state unknown")), s.Tasks, s.Attempts, fmtDur(s.Wall))
	p.legend()
	p.timeline()
	p.str("<h2>Task durations (reducers excluded)</h2>\n")
	p.histogram()
	p.str("<h2>Summary</h2>\n")
	p.summary()
	p.str("</body>\n</html>\n")
}

func (p *page) legend() {
	p.str("<div class=\"legend\">")
	item := func(colour, label string) {
		p.printf("<span><i style=\"background:%s\"></i>%s</span>", colour, label)
	}
	item(waitColour, "queued → started")
	item(colours[Done], "done")
	item(colours[Failed], "failed")
	item(colours[Retried], "failed, retried")
	if p.s.Running > 0 {
		item(colours[Running], "running")
	}
	if len(p.s.arrivals) > 0 {
		item(arrivalColour, "reducer input arrives")
	}
	p.str("</div>\n")
}

// Timeline geometry (SVG user units; the viewBox scales to the page).
const (
	width     = 1000
	marginL   = 64
	marginR   = 16
	plotW     = width - marginL - marginR
	stripH    = 18 // reducer-input strip
	marginTop = 8
	axisH     = 40
)

func (p *page) timeline() {
	s := p.s
	rows := max(s.mapRows+s.reduceRows, 1)
	plotH := min(max(float64(rows)*4, 160), 600)
	rowH := plotH / float64(rows)
	barH := max(rowH*0.8, 0.6)
	top := float64(marginTop)
	if len(s.arrivals) > 0 {
		top += stripH
	}
	height := top + plotH + axisH
	span := float64(max(s.end-s.zero, 1))
	xs := func(t int64) float64 { return marginL + float64(t-s.zero)/span*plotW }
	yRow := func(a Attempt) float64 {
		r := a.Task
		if a.Kind == wire.TaskReduce {
			r += s.reduceRowBase
		}
		return top + float64(r)*rowH + (rowH-barH)/2
	}
	mode := "elements"
	if p.compact {
		mode = "compact"
	}
	p.printf("<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %s\" width=\"%d\" height=\"%s\" data-attempts=\"%d\" data-mode=\"%s\" role=\"img\" aria-label=\"task timeline\">\n",
		width, f1(height), width, f1(height), len(p.atts), mode)

	// Grid and x axis.
	ticks := niceTicks(time.Duration(s.end-s.zero), 8)
	p.str("<g class=\"grid\">")
	for _, t := range ticks.at {
		x := marginL + float64(t)/span*plotW
		p.printf("<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\"/>", f1(x), f1(x), f1(top), f1(top+plotH))
	}
	p.str("</g>\n<g class=\"axis\">")
	p.printf("<path d=\"M%d %sV%sH%d\"/>", marginL, f1(top), f1(top+plotH), marginL+plotW)
	for _, t := range ticks.at {
		x := marginL + float64(t)/span*plotW
		p.printf("<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>",
			f1(x), f1(x), f1(top+plotH), f1(top+plotH+4), f1(x), f1(top+plotH+16), ticks.label(t))
	}
	p.printf("<text x=\"%d\" y=\"%s\" text-anchor=\"middle\">time since submit (%s)</text>", marginL+plotW/2, f1(top+plotH+34), ticks.unit)
	// y axis: task indices.
	for _, r := range intTicks(s.mapRows, 6) {
		y := top + (float64(r)+0.5)*rowH
		p.printf("<line x1=\"%d\" x2=\"%d\" y1=\"%s\" y2=\"%s\"/><text x=\"%d\" y=\"%s\" text-anchor=\"end\">%d</text>",
			marginL-4, marginL, f1(y), f1(y), marginL-6, f1(y+4), r)
	}
	if s.reduceRows > 0 {
		y := top + (float64(s.reduceRowBase)+float64(s.reduceRows)/2)*rowH
		p.printf("<text x=\"%d\" y=\"%s\" text-anchor=\"end\">reduce</text>", marginL-6, f1(y+4))
	}
	p.printf("<text transform=\"translate(14 %s) rotate(-90)\" text-anchor=\"middle\">task</text>", f1(top+plotH/2))
	p.str("</g>\n")

	// Reducer input arrivals.
	if len(s.arrivals) > 0 {
		y0 := float64(marginTop)
		p.printf("<text x=\"%d\" y=\"%s\" text-anchor=\"end\">reducer</text>", marginL-6, f1(y0+12))
		if p.compact || len(s.arrivals) > DefaultMaxElements {
			var d strings.Builder
			for _, t := range s.arrivals {
				d.WriteString("M" + f1(xs(t)) + " " + f1(y0+2) + "v12")
			}
			p.printf("<path class=\"arrivals\" stroke=\"%s\" stroke-width=\"1\" d=\"%s\"/>\n", arrivalColour, d.String())
		} else {
			p.str("<g class=\"arrivals\">")
			for i, t := range s.arrivals {
				x := f1(xs(t))
				p.printf("<line class=\"arrival\" x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\" stroke=\"%s\"><title>input %d at %s</title></line>",
					x, x, f1(y0+2), f1(y0+14), arrivalColour, i+1, fmtDur(time.Duration(t-s.zero)))
			}
			p.str("</g>\n")
		}
	}

	end := func(a Attempt) int64 {
		if a.Finished > 0 {
			return a.Finished
		}
		return s.end
	}
	if p.compact {
		// One path of horizontal strokes per colour.
		var d strings.Builder
		for _, a := range p.atts {
			if a.Queued > 0 && a.Started > a.Queued {
				x0, x1 := xs(a.Queued), xs(a.Started)
				if x1-x0 >= 0.3 {
					d.WriteString("M" + f1(x0) + " " + f1(yRow(a)+barH/2) + "H" + f1(x1))
				}
			}
		}
		p.printf("<path class=\"waits\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" d=\"%s\"/>\n", waitColour, f2(barH), d.String())
		for _, st := range states {
			if st == Queued {
				continue
			}
			d.Reset()
			for _, i := range p.s.attemptsByState[st] {
				a := p.atts[i]
				if a.Started == 0 {
					continue
				}
				x0, x1 := xs(a.Started), xs(end(a))
				if x1-x0 < 0.5 {
					x1 = x0 + 0.5
				}
				d.WriteString("M" + f1(x0) + " " + f1(yRow(a)+barH/2) + "H" + f1(x1))
			}
			if d.Len() > 0 {
				p.printf("<path class=\"bars %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" d=\"%s\"/>\n", st, colours[st], f2(barH), d.String())
			}
		}
	} else {
		p.str("<g class=\"waits\">")
		for _, a := range p.atts {
			if a.Queued > 0 && a.Started > a.Queued {
				x0, x1 := xs(a.Queued), xs(a.Started)
				p.printf("<rect class=\"wait\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"/>",
					f1(x0), f2(yRow(a)), f2(max(x1-x0, 0.2)), f2(barH), waitColour)
			}
		}
		p.str("</g>\n<g class=\"bars\">\n")
		for _, a := range p.atts {
			if a.Started == 0 {
				continue
			}
			x0, x1 := xs(a.Started), xs(end(a))
			tip := fmt.Sprintf("%s %d attempt %d · %s · %s", nz(string(a.Kind), "task"), a.Task, a.Attempt, a.State, fmtDur(time.Duration(end(a)-a.Started)))
			if a.Worker != "" {
				tip += " · worker " + a.Worker
			}
			if a.PeakKB > 0 {
				tip += " · peak " + fmtKB(a.PeakKB)
			}
			if a.Error != "" {
				tip += " · " + truncate(a.Error, 200)
			}
			p.printf("<rect class=\"bar %s\" data-task=\"%d\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"><title>%s</title></rect>\n",
				a.State, a.Task, f1(x0), f2(yRow(a)), f2(max(x1-x0, 0.5)), f2(barH), colours[a.State], esc(tip))
		}
		p.str("</g>\n")
	}
	p.str("</svg>\n")
}

func (p *page) histogram() {
	s := p.s
	const h, top, bottom = 180.0, 8.0, 40.0
	type bin struct{ n map[State]int }
	ds := make([]Attempt, 0, len(s.durations))
	for _, a := range p.atts {
		if a.Started > 0 && a.Finished > 0 && a.Kind != wire.TaskReduce {
			ds = append(ds, a)
		}
	}
	if len(ds) == 0 {
		p.str("<p class=\"sub\">No finished attempts.</p>\n")
		return
	}
	nb := min(max(int(math.Sqrt(float64(len(ds)))), 10), 60)
	maxD := max(s.Max, time.Microsecond)
	bins := make([]bin, nb)
	for i := range bins {
		bins[i].n = map[State]int{}
	}
	for _, a := range ds {
		b := int(float64(a.Duration()) / float64(maxD) * float64(nb))
		bins[min(b, nb-1)].n[a.State]++
	}
	peak := 1
	for _, b := range bins {
		t := 0
		for _, c := range b.n {
			t += c
		}
		peak = max(peak, t)
	}
	p.printf("<svg class=\"histogram\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %s\" width=\"%d\" height=\"%s\" role=\"img\" aria-label=\"duration histogram\">\n",
		width, f1(top+h+bottom), width, f1(top+h+bottom))
	bw := float64(plotW) / float64(nb)
	yticks := intTicks(peak+1, 4)
	p.str("<g class=\"grid\">")
	for _, c := range yticks {
		y := top + h - float64(c)/float64(peak)*h
		p.printf("<line x1=\"%d\" x2=\"%d\" y1=\"%s\" y2=\"%s\"/>", marginL, marginL+plotW, f1(y), f1(y))
	}
	p.str("</g>\n<g class=\"hbins\">")
	for i, b := range bins {
		y := top + h
		for _, st := range []State{Done, Retried, Failed} {
			c := b.n[st]
			if c == 0 {
				continue
			}
			bh := float64(c) / float64(peak) * h
			y -= bh
			lo := time.Duration(float64(maxD) * float64(i) / float64(nb))
			hi := time.Duration(float64(maxD) * float64(i+1) / float64(nb))
			p.printf("<rect class=\"hbin %s\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"><title>%s–%s: %d %s</title></rect>",
				st, f1(marginL+float64(i)*bw+0.5), f2(y), f1(max(bw-1, 0.5)), f2(bh), colours[st], fmtDur(lo), fmtDur(hi), c, st)
		}
	}
	p.str("</g>\n<g class=\"axis\">")
	p.printf("<path d=\"M%d %sV%sH%d\"/>", marginL, f1(top), f1(top+h), marginL+plotW)
	ticks := niceTicks(maxD, 8)
	for _, t := range ticks.at {
		x := marginL + float64(t)/float64(maxD)*plotW
		p.printf("<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>",
			f1(x), f1(x), f1(top+h), f1(top+h+4), f1(x), f1(top+h+16), ticks.label(t))
	}
	for _, c := range yticks {
		y := top + h - float64(c)/float64(peak)*h
		p.printf("<text x=\"%d\" y=\"%s\" text-anchor=\"end\">%d</text>", marginL-6, f1(y+4), c)
	}
	p.printf("<text x=\"%d\" y=\"%s\" text-anchor=\"middle\">attempt duration, started → finished (%s)</text>", marginL+plotW/2, f1(top+h+34), ticks.unit)
	p.printf("<text transform=\"translate(14 %s) rotate(-90)\" text-anchor=\"middle\">attempts</text>", f1(top+h/2))
	p.str("</g>\n</svg>\n")
}

func (p *page) summary() {
	s := p.s
	row := func(k, v string) { p.printf("<tr><td>%s</td><td>%s</td></tr>\n", k, esc(v)) }
	p.str("<table class=\"summary\">\n")
	row("tasks", strconv.Itoa(s.Tasks))
	row("attempts", fmt.Sprintf("%d (done %d, failed %d, retried %d, running %d)", s.Attempts, s.Done, s.Failed, s.Retried, s.Running))
	row("wall time", fmtDur(s.Wall))
	if len(s.durations) > 0 {
		row("duration p50 / p90 / p99 / max", fmt.Sprintf("%s / %s / %s / %s", fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.Max)))
	}
	if s.Reduce > 0 {
		row("reduce attempt", fmtDur(s.Reduce))
	}
	if len(s.waits) > 0 {
		row("queue wait p50 / p99", fmt.Sprintf("%s / %s", fmtDur(s.WaitP50), fmtDur(s.WaitP99)))
	}
	if s.Workers > 0 {
		row("workers", strconv.Itoa(s.Workers))
	}
	if s.PeakKB > 0 {
		row("peak memory of one attempt", fmtKB(s.PeakKB))
	}
	if s.ReducerInputs > 0 {
		row("reducer inputs", strconv.Itoa(s.ReducerInputs))
	}
	if s.LastMapToEnd > 0 {
		row("last map finished → job ended", fmtDur(s.LastMapToEnd))
	}
	p.str("</table>\n")
}

// axisTicks are tick positions with the unit to label them in.
type axisTicks struct {
	at       []time.Duration
	unit     string
	div      time.Duration
	decimals int
}

func (a axisTicks) label(t time.Duration) string {
	return strconv.FormatFloat(float64(t)/float64(a.div), 'f', a.decimals, 64)
}

// niceTicks returns round tick positions for [0, span].
func niceTicks(span time.Duration, n int) axisTicks {
	unit, div := "s", time.Second
	switch {
	case span < 2*time.Millisecond:
		unit, div = "µs", time.Microsecond
	case span < 2*time.Second:
		unit, div = "ms", time.Millisecond
	case span >= 10*time.Minute:
		unit, div = "min", time.Minute
	}
	if span <= 0 {
		return axisTicks{at: []time.Duration{0}, unit: unit, div: div}
	}
	raw := float64(span) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	a := axisTicks{unit: unit, div: div, decimals: max(0, -int(math.Floor(math.Log10(step/float64(div)))))}
	for i := 0; float64(i)*step <= float64(span)*(1+1e-9); i++ {
		a.at = append(a.at, time.Duration(float64(i)*step))
	}
	return a
}

// intTicks returns up to about n round integers in [0, count).
func intTicks(count, n int) []int {
	if count <= 1 {
		return []int{0}
	}
	raw := float64(count) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := int(mag)
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = int(m * mag)
			break
		}
	}
	step = max(step, 1)
	var out []int
	for r := 0; r < count; r += step {
		out = append(out, r)
	}
	return out
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
	return d.Round(time.Second).String()
}

func fmtKB(kb int64) string {
	switch {
	case kb >= 1<<20:
		return strconv.FormatFloat(float64(kb)/(1<<20), 'f', 1, 64) + " GiB"
	case kb >= 1<<10:
		return strconv.FormatFloat(float64(kb)/(1<<10), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatInt(kb, 10) + " KiB"
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func esc(s string) string { return html.EscapeString(s) }

func nz(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
