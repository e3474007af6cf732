package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// setup starts an embedded server and a coordinator, but no runtime: the
// test plays the runtime by hand.
func setup(t *testing.T) (*natsbus.Bus, *coordinator.Coordinator, *client.Client) {
	t.Helper()
	return setupWrapped(t, func(b *natsbus.Bus) bus.Bus { return b })
}

// setupWrapped is setup with the coordinator on wrap's bus around the
// server's connection.
func setupWrapped(t *testing.T, wrap func(*natsbus.Bus) bus.Bus) (*natsbus.Bus, *coordinator.Coordinator, *client.Client) {
	t.Helper()
	srv := natstest.Server(t)
	ctx := context.Background()
	b := natstest.Connect(t, srv, natsbus.Options{})
	c, err := coordinator.New(wrap(b), coordinator.Config{Logger: logger(t), ProgressInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	if err := c.Serve(sctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		c.Close()
	})
	return b, c, client.New(b)
}

func publishEvents(t *testing.T, b bus.Bus, job string, evs ...wire.Event) {
	t.Helper()
	data, err := wire.Encode(wire.KindEvents, wire.Events{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), wire.TaskEvents(job), bus.Message{Data: data}); err != nil {
		t.Fatal(err)
	}
}

// consumers holds one consumer per test and pool: a consumer stopped
// between two takes could leave a task it had pulled waiting for its lease.
var consumers sync.Map // *testing.T + pool -> <-chan bus.Delivery

type consumerKey struct {
	t    *testing.T
	pool string
}

// take reads n tasks off the pool's queue and acks them.
func take(t *testing.T, b bus.Bus, pool string, n int) []wire.Task {
	t.Helper()
	key := consumerKey{t, pool}
	v, ok := consumers.Load(key)
	if !ok {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := b.Consume(ctx, pool, bus.QueueOptions{Prefetch: 64})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); consumers.Delete(key) })
		v, _ = consumers.LoadOrStore(key, ch)
	}
	ch := v.(<-chan bus.Delivery)
	var out []wire.Task
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case d, ok := <-ch:
			if !ok {
				t.Fatalf("consumer closed after %d tasks, want %d", len(out), n)
			}
			var task wire.Task
			if err := wire.Decode(d.Message().Data, wire.KindTask, &task); err != nil {
				t.Fatal(err)
			}
			_ = d.Ack(context.Background())
			out = append(out, task)
		case <-timeout:
			t.Fatalf("took %d tasks, want %d", len(out), n)
		}
	}
	return out
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

// A duplicate terminal event (a redelivered task that ran twice) never
// changes a result, and a failure of an older attempt is ignored.
func TestDuplicateEventsDoNotChangeResults(t *testing.T) {
	b, c, cl := setup(t)
	ctx := context.Background()
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "manual", Function: "echo", Iterdata: wire.Value(`[10,20,30]`), Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	take(t, b, "manual", 3)
	done := func(i, attempt int, v string) wire.Event {
		return wire.Event{Job: id, Task: i, Kind: wire.TaskMap, Attempt: attempt, Type: wire.EventDone, Result: wire.Value(v), Finished: time.Now().UnixNano()}
	}
	failed := func(i, attempt int) wire.Event {
		return wire.Event{Job: id, Task: i, Kind: wire.TaskMap, Attempt: attempt, Type: wire.EventFailed,
			Error: &wire.TaskError{Kind: wire.ErrUser, Message: "flaky", Retryable: true}}
	}
	publishEvents(t, b, id, done(0, 1, "10"), done(0, 1, "999"))
	publishEvents(t, b, id, failed(1, 1))
	if retry := take(t, b, "manual", 1)[0]; retry.Index != 1 || retry.Attempt != 2 {
		t.Fatalf("retry %+v", retry)
	}
	publishEvents(t, b, id, done(1, 2, "20"), failed(1, 1), done(1, 1, "888"))
	publishEvents(t, b, id, done(2, 1, "30"), done(2, 1, "777"))
	st, err := c.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Retried != 1 {
		t.Fatalf("state %s, err %v, status %+v", st.State, err, st)
	}
	res, err := cl.Result(ctx, id)
	if err != nil || string(res) != "[10,20,30]" {
		t.Fatalf("result %s, %v", res, err)
	}
}

// Retries: a retryable failure is re-published with the next attempt, up
// to --retries; the job then fails with the task's error.
func TestRetriesThenFail(t *testing.T) {
	b, c, _ := setup(t)
	ctx := context.Background()
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Pool: "manual", Function: "fail", Data: wire.Value(`{}`), Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 3; attempt++ {
		task := take(t, b, "manual", 1)[0]
		if task.Attempt != attempt {
			t.Fatalf("attempt %d, want %d", task.Attempt, attempt)
		}
		publishEvents(t, b, id, wire.Event{Job: id, Task: 0, Kind: wire.TaskCall, Attempt: attempt, Type: wire.EventFailed,
			Error: &wire.TaskError{Kind: wire.ErrUser, Message: "boom " + strconv.Itoa(attempt), Retryable: true}})
	}
	st, _ := c.Wait(ctx, id)
	if st.State != wire.StateFailed || st.Retried != 2 || st.Error == nil || st.Error.Message != "boom 3" {
		t.Fatalf("status %+v", st)
	}
}

// The aggregator forwards each map result to the reducer's feed exactly
// once, even when the map's event arrives twice, and ends the feed with
// the count.
func TestFeedForwardsEachResultOnce(t *testing.T) {
	b, c, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 50
	iter, _ := json.Marshal(make([]int, n))
	spec := &wire.JobSpec{Kind: wire.JobMapReduce, Pool: "manual", Function: "echo", Iterdata: iter, ReduceFunction: "sum"}
	id, err := c.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	feed, err := b.Subscribe(ctx, wire.FeedSubject(id, 0), bus.SubscribeOptions{Since: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	take(t, b, "manual", n)
	for i := 0; i < n; i++ {
		ev := wire.Event{Job: id, Task: i, Kind: wire.TaskMap, Attempt: 1, Type: wire.EventDone, Result: wire.Value(strconv.Itoa(i)), Finished: time.Now().UnixNano()}
		publishEvents(t, b, id, ev, ev) // every event twice
	}
	seen := map[int]int{}
	for m := range feed {
		var f wire.Feed
		if err := wire.Decode(m.Data, wire.KindFeed, &f); err != nil {
			t.Fatal(err)
		}
		for _, it := range f.Items {
			seen[it.Index]++
		}
		if f.EOS {
			if f.Count != n {
				t.Fatalf("end of stream counts %d, want %d", f.Count, n)
			}
			break
		}
	}
	for i := 0; i < n; i++ {
		if seen[i] != 1 {
			t.Fatalf("map %d forwarded %d times", i, seen[i])
		}
	}
	// The reducer was queued with the first result (streaming).
	red := take(t, b, wire.ReducePool("manual"), 1)[0]
	if red.Kind != wire.TaskReduce || red.Expect != n || red.Feed != wire.FeedSubject(id, 0) {
		t.Fatalf("reduce task %+v", red)
	}
	c.Cancel(ctx, id)
}

func TestValidateNamesEveryBadField(t *testing.T) {
	err := coordinator.Validate(&wire.JobSpec{Kind: "frob", Function: "", ChunkSize: 5, ChunkN: 2, TimeoutMS: -1, Retries: -2, RuntimeMemory: -1})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"kind \"frob\"", "function:", "chunk_size and chunk_n", "timeout", "retries", "runtime_memory"} {
		if !contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s == sub || fmt.Sprint(s) != "" && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestSplitElement(t *testing.T) {
	extra := map[string]wire.Value{"y": wire.Value("1")}
	cases := []struct {
		elem  string
		args  int
		kw    int
		isErr bool
	}{
		{`3`, 1, 1, false},
		{`"s"`, 1, 1, false},
		{`null`, 1, 1, false},
		{`[1,2]`, 2, 1, false},
		{`{"x":1}`, 0, 2, false},
		{`{"y":2}`, 0, 0, true},
	}
	for _, tc := range cases {
		in, err := coordinator.SplitElement(wire.Value(tc.elem), extra)
		if (err != nil) != tc.isErr {
			t.Fatalf("%s: err %v", tc.elem, err)
		}
		if err == nil && (len(in.Args) != tc.args || len(in.Kwargs) != tc.kw) {
			t.Fatalf("%s: %d args, %d kwargs", tc.elem, len(in.Args), len(in.Kwargs))
		}
	}
}

// A job whose runtimes vanished (no event for StallAfter) asks the compute
// backend again for the outstanding tasks.
func TestStalledJobAsksForRuntimesAgain(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := natstest.Connect(t, srv, natsbus.Options{})
	calls := make(chan int, 10)
	c, err := coordinator.New(b, coordinator.Config{Logger: logger(t), ProgressInterval: 50 * time.Millisecond, StallAfter: 300 * time.Millisecond,
		Hooks: coordinator.Hooks{Published: func(ctx context.Context, spec *wire.JobSpec, tasks int) error { calls <- tasks; return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "nobody", Function: "noop", Iterdata: wire.Value(`[1,2,3]`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{3, 3} { // once published, once stalled
		select {
		case got := <-calls:
			if got != want {
				t.Fatalf("hook called with %d tasks, want %d", got, want)
			}
		case <-ctx.Done():
			t.Fatal("the stalled job did not ask for runtimes again")
		}
	}
	publishEvents(t, b, id, wire.Event{Job: id, Task: 0, Kind: wire.TaskMap, Attempt: 1, Type: wire.EventDone, Result: wire.Value("null")})
	select {
	case got := <-calls:
		if got != 2 {
			t.Fatalf("after one task ended the hook got %d, want 2", got)
		}
	case <-ctx.Done():
		t.Fatal("no third call")
	}
	c.Cancel(ctx, id)
}
