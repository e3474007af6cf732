package coordinator_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/coordinator"
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

// queuedOf counts the job's task messages left on the pool's queue (the
// NATS work-queue stream's subject of that job).
func queuedOf(t *testing.T, b *natsbus.Bus, pool, job string) uint64 {
	t.Helper()
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), "SKEIN_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	subj := "skein.task." + pool + "." + job
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// eventually waits for cond, failing after 10 s with what.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job that times out ends as timed out with the timeout as its error,
// and its queued tasks are removed from the queue.
func TestTimeoutEndsJobAndPurgesItsTasks(t *testing.T) {
	b, c, _ := setup(t)
	ctx := context.Background()
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "tmo", Function: "noop", Iterdata: bigIterdata(10), TimeoutMS: 300})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "10 tasks queued", func() bool { return queuedOf(t, b, "tmo", id) == 10 })
	st := waitState(t, ctx, c.Wait, id, wire.StateTimedOut)
	if st.Error == nil || st.Error.Kind != wire.ErrTimeout || !strings.Contains(st.Error.Message, "timeout") {
		t.Fatalf("error %+v", st.Error)
	}
	eventually(t, "the timed-out job's tasks purged", func() bool { return queuedOf(t, b, "tmo", id) == 0 })
}

// Cancel ends the job as cancelled, tells the runtimes (the cancel
// notice) and removes its queued tasks; it has no result.
func TestCancelTellsRuntimesAndPurges(t *testing.T) {
	b, c, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	notices, err := b.Listen(ctx, "cancel")
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "cnl", Function: "noop", Iterdata: bigIterdata(20)})
	if err != nil {
		t.Fatal(err)
	}
	running := take(t, b, "cnl", 1)[0]
	publishEvents(t, b, id, wire.Event{Job: id, Task: running.Index, Attempt: 1, Kind: running.Kind, Type: wire.EventStarted})
	eventually(t, "the task reported running", func() bool { st, _ := c.Status(id); return st.Running == 1 })
	st, err := c.Cancel(ctx, id)
	if err != nil || st.State != wire.StateCancelled || st.Error == nil || st.Error.Kind != wire.ErrCancelled {
		t.Fatalf("cancel: %+v, %v", st, err)
	}
	// Nothing of an ended job runs any more: the task that ran is counted
	// as stopped, in the answer, in the job's status and on its end
	// record, and its runtime's report of the stop changes nothing.
	if st.Running != 0 || st.Stopped != 1 {
		t.Fatalf("the cancelled job's status: running %d, stopped %d; want 0 and 1", st.Running, st.Stopped)
	}
	publishEvents(t, b, id, wire.Event{Job: id, Task: running.Index, Attempt: 1, Kind: running.Kind, Type: wire.EventFailed,
		Error: &wire.TaskError{Kind: wire.ErrCancelled, Message: "job cancelled"}})
	time.Sleep(200 * time.Millisecond)
	for _, get := range []func(string) (wire.JobStatus, error){c.Status, func(id string) (wire.JobStatus, error) { return c.Wait(ctx, id) }} {
		if st, err := get(id); err != nil || st.Running != 0 || st.Stopped != 1 || st.Failed != 0 {
			t.Fatalf("after the runtime's report, the cancelled job's status: %+v, %v; want running 0, stopped 1, failed 0", st, err)
		}
	}
	select {
	case m := <-notices:
		var n wire.Cancel
		if err := wire.Decode(m.Data, wire.KindCancel, &n); err != nil || n.Job != id {
			t.Fatalf("cancel notice %+v, %v", n, err)
		}
	case <-ctx.Done():
		t.Fatal("no cancel notice")
	}
	res, err := c.Results(id, 0, 0, 0)
	if err != nil || len(res.Results) != 0 {
		t.Fatalf("a cancelled job has results: %+v, %v", res, err)
	}
	eventually(t, "the cancelled job's tasks purged", func() bool { return queuedOf(t, b, "cnl", id) == 0 })
}

// Events of attempts the coordinator never published (forged, or of an
// older job with the same id), and of tasks the job does not have, change
// nothing.
func TestEventsOfUnpublishedAttemptsAreIgnored(t *testing.T) {
	b, c, cl := setup(t)
	ctx := context.Background()
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "forge", Function: "echo", Iterdata: wire.Value(`[1,2]`)})
	if err != nil {
		t.Fatal(err)
	}
	take(t, b, "forge", 2)
	forged := func(i, attempt int) wire.Event {
		return wire.Event{Job: id, Task: i, Kind: wire.TaskMap, Attempt: attempt, Type: wire.EventDone, Result: wire.Value(`"HACKED"`)}
	}
	publishEvents(t, b, id, forged(0, 2), forged(1, 0), forged(2, 1), forged(-1, 1))
	publishEvents(t, b, id, wire.Event{Job: id, Task: 0, Kind: wire.TaskMap, Attempt: 1, Type: wire.EventDone, Result: wire.Value(`1`)})
	eventually(t, "the real event counted", func() bool { st, _ := c.Status(id); return st.Done == 1 })
	publishEvents(t, b, id, wire.Event{Job: id, Task: 1, Kind: wire.TaskMap, Attempt: 1, Type: wire.EventDone, Result: wire.Value(`2`)})
	waitState(t, ctx, c.Wait, id, wire.StateDone)
	if res, err := cl.Result(ctx, id); err != nil || string(res) != "[1,2]" {
		t.Fatalf("result %s, %v", res, err)
	}
}

// reducer_one_per_object: one reducer per input object, each fed only its
// object's results with its own count; a retryable reducer failure queues
// the reducer's next attempt; the result is the list of the reducers'
// results in object order.
func TestReducerGroups(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := natstest.Connect(t, srv, natsbus.Options{})
	groups := []int{0, 0, 0, 1, 1}
	expand := func(ctx context.Context, spec *wire.JobSpec, elems []wire.Value, extra map[string]wire.Value) ([]coordinator.Input, []*wire.Object, error) {
		ins := make([]coordinator.Input, len(groups))
		objs := make([]*wire.Object, len(groups))
		for i, g := range groups {
			ins[i] = coordinator.Input{Args: []wire.Value{wire.Value(strconv.Itoa(i))}}
			objs[i] = &wire.Object{URL: "local:///obj" + strconv.Itoa(g), Group: g}
		}
		return ins, objs, nil
	}
	c, err := coordinator.New(b, coordinator.Config{Logger: logger(t), Hooks: coordinator.Hooks{Expand: expand}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMapReduce, Pool: "grp", Function: "echo", Iterdata: wire.Value(`["local:///obj"]`),
		ReduceFunction: "sum", ReducerOnePerObject: true, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := c.Status(id)
	if st.Total != len(groups)+2 {
		t.Fatalf("total %d, want %d maps and 2 reducers", st.Total, len(groups))
	}
	feeds := map[int]map[int]bool{}
	var feedMu sync.Mutex
	for g := 0; g < 2; g++ {
		ch, err := b.Subscribe(ctx, wire.FeedSubject(id, g), bus.SubscribeOptions{Since: time.Now().Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		feeds[g] = map[int]bool{}
		go func(g int) {
			for m := range ch {
				var f wire.Feed
				if wire.Decode(m.Data, wire.KindFeed, &f) == nil {
					feedMu.Lock()
					for _, it := range f.Items {
						feeds[g][it.Index] = true
					}
					feedMu.Unlock()
				}
			}
		}(g)
	}
	for _, tk := range take(t, b, "grp", len(groups)) {
		publishEvents(t, b, id, wire.Event{Job: id, Task: tk.Index, Kind: wire.TaskMap, Attempt: 1, Type: wire.EventDone, Result: wire.Value(strconv.Itoa(tk.Index))})
	}
	reds := take(t, b, wire.ReducePool("grp"), 2)
	for _, r := range reds {
		want := map[int]int{0: 3, 1: 2}[r.Index]
		if r.Kind != wire.TaskReduce || r.Expect != want || r.Feed != wire.FeedSubject(id, r.Index) || r.Attempt != 1 {
			t.Fatalf("reduce task %+v, want group %d expecting %d", r, r.Index, want)
		}
	}
	eventually(t, "each group fed its own results", func() bool {
		feedMu.Lock()
		defer feedMu.Unlock()
		return len(feeds[0]) == 3 && len(feeds[1]) == 2 && feeds[0][0] && feeds[0][1] && feeds[0][2] && feeds[1][3] && feeds[1][4]
	})
	publishEvents(t, b, id, wire.Event{Job: id, Task: 1, Kind: wire.TaskReduce, Attempt: 1, Type: wire.EventFailed,
		Error: &wire.TaskError{Kind: wire.ErrUser, Message: "flaky reducer", Retryable: true}})
	again := take(t, b, wire.ReducePool("grp"), 1)[0]
	if again.Index != 1 || again.Attempt != 2 {
		t.Fatalf("retried reducer %+v", again)
	}
	publishEvents(t, b, id,
		wire.Event{Job: id, Task: 0, Kind: wire.TaskReduce, Attempt: 1, Type: wire.EventDone, Result: wire.Value(`3`)},
		wire.Event{Job: id, Task: 1, Kind: wire.TaskReduce, Attempt: 2, Type: wire.EventDone, Result: wire.Value(`7`)})
	st = waitState(t, ctx, c.Wait, id, wire.StateDone)
	if st.Retried != 1 {
		t.Fatalf("retried %d, want 1", st.Retried)
	}
	res, err := c.Results(id, 0, 0, 0)
	if err != nil || len(res.Results) != 2 || string(res.Results[0]) != "3" || string(res.Results[1]) != "7" {
		t.Fatalf("results %+v, %v", res, err)
	}
}
