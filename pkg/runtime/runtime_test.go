package runtime_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

func setup(t *testing.T) *natsbus.Bus {
	t.Helper()
	return natstest.Connect(t, natstest.Server(t), natsbus.Options{})
}

func feed(t *testing.T, b bus.Bus, job string, f wire.Feed) {
	t.Helper()
	data, err := wire.Encode(wire.KindFeed, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), wire.FeedSubject(job, f.Group), bus.Message{Data: data}); err != nil {
		t.Fatal(err)
	}
}

// jobStart records a job's spec on the job log, as a coordinator does,
// and returns its position: where the job's feeds start.
func jobStart(t *testing.T, b bus.Bus, job string) uint64 {
	t.Helper()
	seq, err := b.PublishSeq(context.Background(), wire.JobSpecSubject(job), bus.Message{})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// The reducer drops duplicate inputs (a map event delivered twice, a feed
// replayed) and ends at the count the end-of-stream mark carries, whatever
// the order.
func TestReducerDropsDuplicates(t *testing.T) {
	b := setup(t)
	job := "jdup"
	start := jobStart(t, b, job)
	v := func(i int) wire.FeedItem {
		return wire.FeedItem{Index: i, Value: wire.Value(json.RawMessage([]byte{byte('0' + i)}))}
	}
	// End of stream first, then the items, with duplicates.
	feed(t, b, job, wire.Feed{Job: job, EOS: true, Count: 4})
	feed(t, b, job, wire.Feed{Job: job, Items: []wire.FeedItem{v(0), v(1), v(1)}})
	feed(t, b, job, wire.Feed{Job: job, Items: []wire.FeedItem{v(3), v(0), v(2), v(3)}})
	rd := &runtime.Reducer{Bus: b, Registry: fn.Builtins()}
	for _, red := range []string{"sum", "go:product"} {
		var arrivals []int64
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := rd.Reduce(ctx, &wire.Task{Job: job, Kind: wire.TaskReduce, Function: red, Feed: wire.FeedSubject(job, 0), Expect: 4, FeedFrom: start}, 0, nil, &arrivals)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"sum": "6", "go:product": "0"}[red]
		if string(out) != want || len(arrivals) != 4 {
			t.Fatalf("%s: got %s with %d inputs, want %s with 4", red, out, len(arrivals), want)
		}
	}
}

// A list reducer gets the list in iterdata order, whatever the arrival
// order.
func TestListReducerGetsIterdataOrder(t *testing.T) {
	b := setup(t)
	job := "jlist"
	start := jobStart(t, b, job)
	reg := fn.Builtins()
	var got []int
	reg.Register(fn.Spec{Name: "collect", Params: []string{"values"}, Run: func(ctx context.Context, a *fn.Args) (any, error) {
		return nil, a.Get("values", &got)
	}})
	feed(t, b, job, wire.Feed{Job: job, Items: []wire.FeedItem{{Index: 12, Value: wire.Value("12")}, {Index: 10, Value: wire.Value("10")}}})
	feed(t, b, job, wire.Feed{Job: job, Items: []wire.FeedItem{{Index: 11, Value: wire.Value("11")}}, EOS: true, Count: 3})
	rd := &runtime.Reducer{Bus: b, Registry: reg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rd.Reduce(ctx, &wire.Task{Job: job, Kind: wire.TaskReduce, Function: "collect", Feed: wire.FeedSubject(job, 0), Expect: 3, IndexBase: 10, FeedFrom: start}, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != 10 || got[1] != 11 || got[2] != 12 {
		t.Fatalf("list %v, want [10 11 12]", got)
	}
}

// runOne queues one task, runs a runtime until its event arrives, and
// returns the event.
func runOne(t *testing.T, reg *fn.Registry, task wire.Task) wire.Event {
	t.Helper()
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	events, err := b.Subscribe(ctx, wire.TaskEvents(task.Job), bus.SubscribeOptions{Since: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := wire.Encode(wire.KindTask, task)
	if err := b.Enqueue(ctx, "default", bus.Message{Data: data, Key: task.Job}); err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(b, runtime.Config{Registry: reg, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	defer func() { stop(); <-done }()
	for m := range events {
		evs, err := coordinator.DecodeEvents(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Type != wire.EventStarted {
				return ev
			}
		}
	}
	t.Fatal("no event")
	return wire.Event{}
}

func TestPanicBecomesFailedEventWithStack(t *testing.T) {
	reg := fn.Builtins()
	reg.Register(fn.Spec{Name: "explode", Run: func(ctx context.Context, a *fn.Args) (any, error) {
		var m map[string]int
		m["boom"] = 1 // assignment to a nil map
		return nil, nil
	}})
	ev := runOne(t, reg, wire.Task{Job: "jpanic", Kind: wire.TaskCall, Attempt: 1, Function: "explode"})
	if ev.Type != wire.EventFailed || ev.Error == nil || ev.Error.Kind != wire.ErrPanic || !strings.Contains(ev.Error.Stack, "runtime_test.go") {
		t.Fatalf("event %+v", ev.Error)
	}
}

func TestUnknownFunctionIsNotRetryable(t *testing.T) {
	ev := runOne(t, fn.Builtins(), wire.Task{Job: "junk", Kind: wire.TaskCall, Attempt: 1, Function: "nosuch"})
	if ev.Type != wire.EventFailed || ev.Error.Kind != wire.ErrUnknownFn || ev.Error.Retryable || !strings.Contains(ev.Error.Message, `"nosuch"`) {
		t.Fatalf("event %+v", ev.Error)
	}
}

func TestDeadlineBecomesTimeout(t *testing.T) {
	ev := runOne(t, fn.Builtins(), wire.Task{Job: "jslow", Kind: wire.TaskCall, Attempt: 1, Function: "sleep", Args: []wire.Value{wire.Value("5")}, TimeoutMS: 200})
	if ev.Type != wire.EventFailed || ev.Error.Kind != wire.ErrTimeout || !ev.Error.Retryable {
		t.Fatalf("event %+v", ev.Error)
	}
}

func TestConfigValidate(t *testing.T) {
	err := runtime.Config{Slots: -1, Lease: time.Millisecond, MaxAttempts: -2}.Validate()
	for _, want := range []string{"slots", "lease", "max attempts"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate does not name %q: %v", want, err)
		}
	}
	if err := runtime.DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
}
