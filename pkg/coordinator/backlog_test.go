package coordinator_test

import (
	"context"
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
		var before wire.JobStatus
		for {
			if before, err = co.Status(bigID); err != nil {
				t.Fatal(err)
			}
			if before.Done >= 2*backlog {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the large job did not get going: %+v", before)
			case <-time.After(5 * time.Millisecond):
			}
		}
		smallID, err := co.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleeps(small)})
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
		// Ahead of the small job's tasks: at most the large job's backlog
		// (and a batch it published as the small job was submitted); a
		// slot may also take a task of the large job queued behind them
		// while the other runs the small job's last ones.
		if ran := after.Done - before.Done; ran > 2*backlog {
			t.Fatalf("%d of the large job's tasks ended while the 4-task job submitted after it ran (its backlog is %d): the later job waited behind them", ran, backlog)
		} else {
			t.Logf("%d of the large job's tasks ended while the later job ran (backlog %d; %d of %d done before it)", ran, backlog, before.Done, big)
		}
		if st, err := co.Wait(ctx, bigID); err != nil || st.State != wire.StateDone || st.Done != big {
			t.Fatalf("large job: %+v, %v", st, err)
		}
	})
}
