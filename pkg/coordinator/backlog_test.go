package coordinator_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestJobBacklogLetsLaterJobsThrough: a pool's queue is first in, first
// out, so a job submitted while a large one runs would wait behind all of
// the large one's tasks. With Config.JobBacklog the large job has at most
// that many queued or running, and the later job runs behind those only.
// Structural: it counts the large job's tasks that end while the small
// one runs (without the bound, nearly all of them).
func TestJobBacklogLetsLaterJobsThrough(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		const backlog, big, small = 16, 300, 4
		co, _ := newCoordinator(t, tb.connect(t, "coordinator"), coordinator.Config{JobBacklog: backlog})
		startRuntime(t, tb.connect(t, "runtime"), 2)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sleeps := func(n int) wire.Value {
			return wire.Value("[" + strings.TrimSuffix(strings.Repeat("0.01,", n), ",") + "]")
		}
		bigID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleeps(big)})
		if err != nil {
			t.Fatal(err)
		}
		ran, before := laterJobWaits(ctx, t, co, bigID, 2*backlog, sleeps(small))
		// Ahead of the small job's tasks: at most the large job's backlog
		// (and a batch it published as the small job was submitted); a
		// slot may also take a task of the large job queued behind them
		// while the other runs the small job's last ones.
		if ran > 2*backlog {
			t.Fatalf("%d of the large job's tasks ended while the 4-task job submitted after it ran (its backlog is %d): the later job waited behind them", ran, backlog)
		} else {
			t.Logf("%d of the large job's tasks ended while the later job ran (backlog %d; %d of %d done before it)", ran, backlog, before.Done, big)
		}
		if st, err := co.Wait(ctx, bigID); err != nil || st.State != wire.StateDone || st.Done != big {
			t.Fatalf("large job: %+v, %v", st, err)
		}
	})
}

// laterJobWaits waits until done of bigID's tasks ended, calls each of
// then (with the job at that point), submits a job of small's sleeps and
// waits for it, and returns how many of bigID's tasks ended meanwhile,
// and bigID's status from before.
func laterJobWaits(ctx context.Context, t *testing.T, co *coordinator.Coordinator, bigID string, done int, small wire.Value, then ...func()) (int, wire.JobStatus) {
	t.Helper()
	var before wire.JobStatus
	var err error
	for {
		if before, err = co.Status(bigID); err != nil {
			t.Fatal(err)
		}
		if before.Done >= done {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the large job did not get going: %+v", before)
		case <-time.After(5 * time.Millisecond):
		}
	}
	for _, f := range then {
		f()
	}
	smallID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: small})
	if err != nil {
		t.Fatal(err)
	}
	st, err := co.Wait(ctx, smallID)
	if err != nil || st.State != wire.StateDone {
		t.Fatalf("small job: %+v, %v", st, err)
	}
	after, err := co.Status(bigID)
	if err != nil {
		t.Fatal(err)
	}
	return after.Done - before.Done, before
}

// TestJobBacklogFollowsThePace: with the default bound (8,192, which
// suits floods of short tasks), a job of a function the coordinator has
// seen before keeps about what its pace needs queued or running, so a
// later job does not wait behind hundreds of its tasks. Structural: it
// counts the large job's tasks that end while the small one runs (with a
// fixed bound of 8,192, all of those left, over 500).
func TestJobBacklogFollowsThePace(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		const big, small = 600, 4
		co, _ := newCoordinator(t, tb.connect(t, "coordinator"), coordinator.Config{})
		startRuntime(t, tb.connect(t, "runtime"), 2)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sleeps := func(n int) wire.Value {
			return wire.Value("[" + strings.TrimSuffix(strings.Repeat("0.05,", n), ",") + "]")
		}
		// A first job of the function: the coordinator learns its pace
		// (about 40 tasks a second of 50 ms, over more than a second).
		firstID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleeps(60)})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := co.Wait(ctx, firstID); err != nil || st.State != wire.StateDone {
			t.Fatalf("first job: %+v, %v", st, err)
		}
		bigID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleeps(big)})
		if err != nil {
			t.Fatal(err)
		}
		var bound int64
		ran, _ := laterJobWaits(ctx, t, co, bigID, 20, sleeps(small), func() {
			bound = coordinator.Backlog(co, bigID)
			if bound <= 0 || bound >= 300 {
				t.Fatalf("the large job's backlog is %d, want the pace's (about 120)", bound)
			}
		})
		if ran > 2*int(bound) {
			t.Fatalf("%d of the large job's tasks ended while the 4-task job submitted after it ran (its backlog was %d): the later job waited behind them", ran, bound)
		} else {
			t.Logf("%d of the large job's tasks ended while the later job ran (backlog %d)", ran, bound)
		}
		if _, err := co.Cancel(ctx, bigID); err != nil {
			t.Fatal(err)
		}
	})
}

// TestJobBacklogGrowsToTheRuntimes: a job that starts from a pace
// measured on a smaller fleet (its bound the floor, 8) grows its bound
// until the runtimes' 16 slots run its tasks. Structural: the most tasks
// seen running at once, which a bound stuck at 8 would cap at 8.
func TestJobBacklogGrowsToTheRuntimes(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		const n, runtimes, slots = 400, 4, 4
		co, _ := newCoordinator(t, tb.connect(t, "coordinator"), coordinator.Config{})
		for i := range runtimes {
			startRuntime(t, tb.connect(t, "runtime-"+strconv.Itoa(i)), slots)
		}
		coordinator.SeedPace(co, "sleep", 1, 200*time.Millisecond) // paceTarget 2: the floor
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		id, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: wire.Value("[" + strings.TrimSuffix(strings.Repeat("0.1,", n), ",") + "]")})
		if err != nil {
			t.Fatal(err)
		}
		if b := coordinator.Backlog(co, id); b != 8 {
			t.Fatalf("the job starts with a backlog of %d, want 8", b)
		}
		most, bound := 0, int64(0)
		for {
			st, err := co.Status(id)
			if err != nil {
				t.Fatal(err)
			}
			most, bound = max(most, st.Running), max(bound, coordinator.Backlog(co, id))
			if st.State.Terminal() {
				if st.State != wire.StateDone || st.Done != n {
					t.Fatalf("job: %+v", st)
				}
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("job did not end: %+v", st)
			case <-time.After(10 * time.Millisecond):
			}
		}
		if most < 12 {
			t.Fatalf("at most %d tasks ran at once on %d slots (the backlog reached %d)", most, runtimes*slots, bound)
		}
		t.Logf("up to %d tasks ran at once on %d slots; the backlog grew from 8 to %d", most, runtimes*slots, bound)
	})
}

// TestJobBacklogPaceFromTheJobLog: a coordinator that joins a namespace
// paces a function's jobs from the end records of the jobs others ran
// (and a restarted one from those of its recover window), not from its
// own memory only: a job submitted to it starts with the function's
// pace, not 8,192.
func TestJobBacklogPaceFromTheJobLog(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		a, _ := startCoordinator(t, tb.connect(t, "coordinator-a"), coordinator.Config{}, true)
		startRuntime(t, tb.connect(t, "runtime"), 2)
		sleeps := func(n int) wire.Value {
			return wire.Value("[" + strings.TrimSuffix(strings.Repeat("0.05,", n), ",") + "]")
		}
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleeps(60)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Wait(ctx, id)
		if err != nil || st.State != wire.StateDone {
			t.Fatalf("first job: %+v, %v", st, err)
		}
		if st.TasksPerSec <= 0 || st.TaskRunMeanUs < 50000 {
			t.Fatalf("the first job's status has no pace: %v tasks/s, %d µs a task", st.TasksPerSec, st.TaskRunMeanUs)
		}
		b, _ := startCoordinator(t, tb.connect(t, "coordinator-b"), coordinator.Config{}, true)
		id2, err := b.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleeps(600)})
		if err != nil {
			t.Fatal(err)
		}
		if bound := coordinator.Backlog(b, id2); bound <= 0 || bound >= 300 {
			t.Fatalf("a job of the same function on the other coordinator starts with a backlog of %d, want the pace's (about 120; %v tasks/s of %d µs)", bound, st.TasksPerSec, st.TaskRunMeanUs)
		} else {
			t.Logf("the other coordinator's job starts with a backlog of %d (the first job: %.0f tasks/s of %d µs)", bound, st.TasksPerSec, st.TaskRunMeanUs)
		}
		if _, err := b.Cancel(ctx, id2); err != nil {
			t.Fatal(err)
		}
	})
}
