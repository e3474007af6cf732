package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/wire"
)

// JobResult is what became of one job of a round.
type JobResult struct {
	Name  string
	ID    string
	Want  wire.JobState // how the job must end
	Tasks int
	Exit  int           // exit code of its waiting submit (-1: killed)
	Hung  bool          // its submit had not exited by the deadline
	Took  time.Duration // submit to exit

	// Lost and Wrong count result elements missing and wrong, for jobs
	// that must succeed (every element of a job without a result is lost).
	Lost, Wrong int
	// From the job's events on the bus: tasks with more than one "done"
	// event, and tasks delivered more than once.
	RanTwice, Redelivered int
	EventsRead            bool
	Problems              []string
}

// Report is the outcome of one round.
type Report struct {
	Bus    string
	Server string // the broker and its version
	Seed   int64
	LogDir string
	Wall   time.Duration // first submit to the last job's end
	Jobs   []JobResult
	Kills  struct{ Runtimes, Broker, Coordinator int }
	// Leftover is the number of task messages still queued after every
	// job ended.
	Leftover int
	Timeline []string
	// Problems are failures, each with its evidence (log lines); Notes
	// are facts worth reading that are not failures.
	Problems []string
	Notes    []string
}

// Failed reports whether the round found a failure.
func (r *Report) Failed() bool { return len(r.Problems) > 0 }

// Summary is one paragraph: jobs, kills, counts, problems.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s round on %s (seed %d, logs %s): %s wall, killed %d runtimes, the broker %d×, the coordinator %d×\n",
		r.Bus, r.Server, r.Seed, r.LogDir, r.Wall.Round(100*time.Millisecond), r.Kills.Runtimes, r.Kills.Broker, r.Kills.Coordinator)
	for _, j := range r.Jobs {
		fmt.Fprintf(&b, "  job %-8s %-26s want %-9s exit %2d in %6s", j.Name, orUnknown(j.ID), j.Want, j.Exit, j.Took.Round(100*time.Millisecond))
		if j.Want == wire.StateDone {
			fmt.Fprintf(&b, "  %4d tasks, lost %d, wrong %d", j.Tasks, j.Lost, j.Wrong)
			if j.EventsRead {
				fmt.Fprintf(&b, ", ran twice %d, redelivered %d", j.RanTwice, j.Redelivered)
			} else {
				fmt.Fprintf(&b, ", events not read")
			}
		}
		if len(j.Problems) > 0 {
			fmt.Fprintf(&b, "  FAILED")
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  task messages left on the queue: %d\n", r.Leftover)
	return b.String()
}

// Details is the timeline, the notes and the problems in full.
func (r *Report) Details() string {
	var b strings.Builder
	b.WriteString("timeline:\n")
	for _, l := range r.Timeline {
		b.WriteString("  " + l + "\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("notes:\n")
		for _, n := range r.Notes {
			b.WriteString(indent("- "+n) + "\n")
		}
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(&b, "%d problems:\n", len(r.Problems))
		for i, p := range r.Problems {
			b.WriteString(indent(fmt.Sprintf("%d. %s", i+1, p)) + "\n")
		}
	}
	return b.String()
}

// Totals sums a bus's rounds.
type Totals struct {
	Server                                      string
	Bus                                         string
	Rounds, Failed                              int
	Jobs, Tasks, Lost, Wrong, RanTwice, Redeliv int
	Leftover                                    int
	Walls                                       []time.Duration
}

// Add counts a round.
func (t *Totals) Add(r *Report) {
	t.Bus, t.Server = r.Bus, r.Server
	t.Rounds++
	if r.Failed() {
		t.Failed++
	}
	t.Walls = append(t.Walls, r.Wall)
	t.Leftover += r.Leftover
	for _, j := range r.Jobs {
		t.Jobs++
		if j.Want != wire.StateDone {
			continue
		}
		t.Tasks += j.Tasks
		t.Lost += j.Lost
		t.Wrong += j.Wrong
		t.RanTwice += j.RanTwice
		t.Redeliv += j.Redelivered
	}
}

// WriteTable prints one line per bus: rounds, jobs, tasks of the jobs
// that must succeed, elements lost and wrong, tasks that ran twice and
// were redelivered, task messages left queued, failed rounds, and the
// median and worst wall time of a round.
func WriteTable(w io.Writer, totals []*Totals) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "bus\tserver\trounds\tjobs\ttasks\tlost\twrong\tran twice\tredelivered\tleft queued\tfailed rounds\twall/round p50\tmax\t")
	sort.Slice(totals, func(i, k int) bool {
		if totals[i].Bus != totals[k].Bus {
			return totals[i].Bus < totals[k].Bus
		}
		return totals[i].Server < totals[k].Server
	})
	for _, t := range totals {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", t.Bus, t.Server, t.Rounds, t.Jobs, t.Tasks, t.Lost, t.Wrong,
			t.RanTwice, t.Redeliv, t.Leftover, t.Failed,
			stats.Percentile(t.Walls, 50).Round(100*time.Millisecond), stats.Percentile(t.Walls, 100).Round(100*time.Millisecond))
	}
	tw.Flush()
}
