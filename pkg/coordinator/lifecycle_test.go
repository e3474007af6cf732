package coordinator_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// bigIterdata is a JSON list of n small numbers.
func bigIterdata(n int) wire.Value {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteByte(']')
	return wire.Value(b.String())
}

func waitState(t *testing.T, ctx context.Context, wait func(context.Context, string) (wire.JobStatus, error), id string, want wire.JobState) wire.JobStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for job %s: %v (status %+v)", id, err, st)
	}
	if st.State != want {
		t.Fatalf("job %s ended %s (%v), want %s", id, st.State, st.Error, want)
	}
	return st
}

// A job that ends while its tasks are still being published (cancelled,
// timed out, or failed on an early task) stops publishing and does not
// bring the coordinator down; the coordinator goes on serving other jobs.
func TestJobEndsWhilePublishing(t *testing.T) {
	for _, end := range []string{"cancel", "timeout", "failure"} {
		t.Run(end, func(t *testing.T) {
			b, c, _ := setup(t)
			ctx := context.Background()
			spec := &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: bigIterdata(200_000), InvokePoolThreads: 64}
			want := wire.StateCancelled
			switch end {
			case "timeout":
				spec.TimeoutMS = 50
				want = wire.StateTimedOut
			case "failure":
				spec.Pool = "fail-" + strconv.FormatInt(time.Now().UnixNano(), 36)
				want = wire.StateFailed
			}
			id, err := c.Submit(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			switch end {
			case "cancel":
				time.Sleep(50 * time.Millisecond)
				if _, err := c.Cancel(ctx, id); err != nil {
					t.Fatal(err)
				}
			case "failure":
				// The first task fails for good while the rest are published.
				tk := take(t, b, spec.Pool, 1)[0]
				publishEvents(t, b, id, wire.Event{Job: id, Task: tk.Index, Attempt: 1, Kind: tk.Kind, Type: wire.EventFailed,
					Error: &wire.TaskError{Kind: wire.ErrUser, Message: "boom"}})
			}
			st := waitState(t, ctx, c.Wait, id, want)
			if st.Done >= 200_000 {
				t.Fatalf("job reports %d tasks done", st.Done)
			}
			// The coordinator is alive and serves a new job.
			id2, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Function: "noop", Data: wire.Value(`1`), Pool: "after-" + end})
			if err != nil {
				t.Fatal(err)
			}
			tk := take(t, b, "after-"+end, 1)[0]
			publishEvents(t, b, id2, wire.Event{Job: id2, Task: tk.Index, Attempt: 1, Kind: tk.Kind, Type: wire.EventDone, Result: wire.Value(`"ok"`)})
			waitState(t, ctx, c.Wait, id2, wire.StateDone)
			res, err := c.Results(id2, 0, 0, 0)
			if err != nil || len(res.Results) != 1 || string(res.Results[0]) != `"ok"` {
				b, _ := json.Marshal(res)
				t.Fatalf("results of the second job: %s, %v", b, err)
			}
		})
	}
}
