package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// Exit codes of submit (docs/cli.md).
const (
	exitOK        = 0
	exitTimedOut  = 4
	exitCancelled = 6
)

// postMortem checks every job's outcome, counts the tasks that ran twice
// from the jobs' events, and checks that no task message stays queued.
func (r *round) postMortem(ctx context.Context) {
	// A crashed coordinator or broker is back by now (supervise); make
	// sure both serve before asking them anything.
	if b := r.cfg.Broker.Proc(); b != nil && !b.Running() {
		if err := r.cfg.Broker.Start(ctx); err != nil {
			r.problem("post-mortem: the broker does not start: %v", err)
			return
		}
	}
	r.mu.Lock()
	co := r.coord
	r.mu.Unlock()
	if co != nil && !co.Running() {
		if err := r.startCoordinator(ctx); err != nil {
			r.problem("post-mortem: the coordinator does not start: %v", err)
		}
	}
	for _, j := range r.jobs {
		r.checkJob(ctx, j)
	}
	r.countEvents(ctx)
	r.checkLeftovers(ctx)
	r.scanLogs()
	for _, j := range r.jobs {
		r.report.Jobs = append(r.report.Jobs, j.JobResult)
	}
}

// checkJob compares a job's outcome with what it should be.
func (r *round) checkJob(ctx context.Context, j *job) {
	p := r.procOf(j)
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf("job %s (%s): ", j.Name, orUnknown(j.ID)) + fmt.Sprintf(format, args...)
		if p != nil {
			msg += fmt.Sprintf("\n  %s stderr (%s):\n%s", p.Name, p.LogPath, indent(p.Tail(25)))
		}
		if j.ID != "" {
			msg += "\n  " + r.statusOf(ctx, j)
		}
		j.Problems = append(j.Problems, firstLine(msg))
		r.problem("%s", msg)
	}
	if p == nil {
		if j.Want == wire.StateDone {
			j.Lost = j.Tasks
		}
		fail("never ran")
		return
	}
	switch j.Want {
	case wire.StateDone:
		if j.Hung || j.Exit != exitOK {
			j.Lost = j.Tasks
			fail("submit %s, want exit 0 and the result", p.Exit())
			return
		}
		lost, wrong, detail := compareResult(j, p.Stdout())
		j.Lost, j.Wrong = lost, wrong
		if lost > 0 || wrong > 0 {
			fail("exit 0 but the result is not exact: %d elements missing, %d wrong of %d:\n%s", lost, wrong, j.Tasks, indent(detail))
		}
	case wire.StateCancelled:
		r.mu.Lock()
		c := j.cancelProc
		r.mu.Unlock()
		if c == nil {
			fail("submit cancel never ran")
		} else if c.ExitCode() != exitOK || !strings.Contains(c.Stdout(), `"cancelled"`) {
			fail("submit cancel: %s, stdout %q, want exit 0 and state \"cancelled\"; stderr:\n%s", c.Exit(), strings.TrimSpace(c.Stdout()), indent(c.Tail(15)))
		}
		if j.Hung || j.Exit != exitCancelled || !strings.Contains(p.Stdout(), `"cancelled"`) {
			fail("submit wait: %s, stdout %q, want exit %d and state \"cancelled\"", p.Exit(), strings.TrimSpace(p.Stdout()), exitCancelled)
		}
	case wire.StateTimedOut:
		if j.Hung || j.Exit != exitTimedOut || !strings.Contains(p.Log(), "timed out") {
			fail("submit %s, want exit %d and \"timed out\" on stderr", p.Exit(), exitTimedOut)
		}
	}
}

// compareResult checks stdout against the job's exact result: a JSON list
// whose element i is j.value(i).
func compareResult(j *job, stdout string) (lost, wrong int, detail string) {
	var got []json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &got); err != nil {
		return j.Tasks, 0, fmt.Sprintf("stdout is not a JSON list (%v): %.200q", err, stdout)
	}
	var lines []string
	show := func(format string, args ...any) {
		if len(lines) < 12 {
			lines = append(lines, fmt.Sprintf(format, args...))
		}
	}
	for i := 0; i < j.Tasks || i < len(got); i++ {
		want, _ := json.Marshal(j.value(i))
		switch {
		case i >= j.Tasks:
			wrong++
			show("element %d: %s, beyond the %d elements", i, got[i], j.Tasks)
		case i >= len(got) || bytes.Equal(bytes.TrimSpace(got[i]), []byte("null")):
			lost++
			show("element %d: missing, want %s", i, want)
		case !bytes.Equal(bytes.TrimSpace(got[i]), want):
			wrong++
			show("element %d: %s, want %s", i, got[i], want)
		}
	}
	if n := lost + wrong; n > len(lines) {
		lines = append(lines, fmt.Sprintf("… and %d more", n-len(lines)))
	}
	return lost, wrong, strings.Join(lines, "\n")
}

// statusOf asks `submit status` for a job's state, as evidence.
func (r *round) statusOf(ctx context.Context, j *job) string {
	p, err := r.runSubmit(ctx, 20*time.Second, j.Name+"-status", "status", j.ID, "--log-level", "info")
	if err != nil {
		return "submit status: " + err.Error()
	}
	return fmt.Sprintf("submit status %s: %s, stdout %s", j.ID, p.Exit(), strings.TrimSpace(p.Stdout()))
}

// countEvents replays the events of every job that ended done (the
// events runtimes published on the bus, not the coordinator's summary)
// and counts, per job, the tasks with more than one "done" event (their
// function ran to the end twice or more) and the tasks the bus delivered
// more than once (delivery count > 1 on an event: a runtime died or
// lost its lease holding them).
func (r *round) countEvents(ctx context.Context) {
	b, err := dial.Open(ctx, r.cfg.Broker.URL(), dial.Options{Name: "skein-chaos"})
	if err != nil {
		r.problem("post-mortem: cannot connect to the bus to read the events: %v", err)
		return
	}
	defer b.Close()
	for _, j := range r.jobs {
		if j.Want != wire.StateDone || j.ID == "" || j.Hung {
			continue
		}
		evs, err := replayEvents(ctx, b, j)
		if err != nil {
			r.note("job %s (%s): reading its events: %v", j.Name, j.ID, err)
			continue
		}
		done := map[int]int{}
		redelivered := map[int]bool{}
		for _, ev := range evs {
			if ev.Kind != wire.TaskMap || ev.Job != j.ID {
				continue
			}
			if ev.Type == wire.EventDone {
				done[ev.Task]++
			}
			if ev.Delivery > 1 {
				redelivered[ev.Task] = true
			}
		}
		j.EventsRead = true
		for _, n := range done {
			if n > 1 {
				j.RanTwice++
			}
		}
		j.Redelivered = len(redelivered)
		if len(done) != j.Tasks {
			r.note("job %s (%s): the events on the bus show %d of %d tasks done (%d events read)", j.Name, j.ID, len(done), j.Tasks, len(evs))
		}
	}
}

// replayEvents reads a job's task events from the bus itself, from a
// little before its submit started, until every task has a "done" event
// and the stream has been quiet for a second, or it has been quiet for 3
// s. It does not ask the coordinator, which may not know a job that
// ended before it (re)started.
func replayEvents(ctx context.Context, b bus.Bus, j *job) ([]wire.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ch, err := b.Subscribe(ctx, wire.TaskEvents(j.ID), bus.SubscribeOptions{Since: j.submitted.Add(-5 * time.Second)})
	if err != nil {
		return nil, err
	}
	var evs []wire.Event
	done := map[int]bool{}
	quiet := time.NewTimer(3 * time.Second)
	defer quiet.Stop()
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return evs, ctx.Err()
			}
			batch, err := coordinator.DecodeEvents(m.Data)
			if err != nil {
				continue
			}
			for _, ev := range batch {
				evs = append(evs, ev)
				if ev.Type == wire.EventDone {
					done[ev.Task] = true
				}
			}
			wait := 3 * time.Second
			if len(done) >= j.Tasks {
				wait = time.Second
			}
			quiet.Reset(wait)
		case <-quiet.C:
			return evs, nil
		case <-ctx.Done():
			return evs, ctx.Err()
		}
	}
}

func orUnknown(id string) string {
	if id == "" {
		return "id unknown"
	}
	return id
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// scanLogs collects the lines of every program's log that tell of a
// crash or a race, as evidence beside the problems.
func (r *round) scanLogs() {
	for _, p := range r.cfg.Procs.All() {
		if !strings.HasPrefix(p.Name, "coordinator") && !strings.HasPrefix(p.Name, "runtime") && !strings.HasPrefix(p.Name, "submit") {
			continue
		}
		lines := grep(p.Log(), "panic:", "DATA RACE", "fatal error:")
		if len(lines) > 0 {
			r.problem("%s (%s) logged: %s\n%s", p.Name, p.LogPath, firstLine(lines[0]), indent(p.Tail(40)))
		}
	}
}
