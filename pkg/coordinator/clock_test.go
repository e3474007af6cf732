package coordinator_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// A submitter whose clock is 10 s ahead of or behind the broker's and the
// coordinator's changes nothing: the job's subscriptions start at its
// spec's stream position and its deadline is the coordinator's. (Before,
// a clock ahead lost every event and the job hung until its timeout; a
// clock behind timed a 5 s job out at once.)
func TestSubmitterClockSkew(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		startRuntime(t, tb.connect(t, "runtime"), 4)
		newCoordinator(t, tb.connect(t, "coordinator"), coordinator.Config{})
		cl := client.New(tb.connect(t, "submitter"))
		for _, skew := range []time.Duration{10 * time.Second, -10 * time.Second} {
			for _, kind := range []wire.JobKind{wire.JobMap, wire.JobMapReduce} {
				t.Run(string(kind)+"/"+skew.String(), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					const tasks = 12
					spec := &wire.JobSpec{Kind: kind, Function: "sleep", Iterdata: sleepIter(tasks, 0.05), TimeoutMS: 5000,
						SubmittedAt: time.Now().Add(skew).UnixNano()}
					want := indexList(tasks)
					if kind == wire.JobMapReduce {
						spec.ReduceFunction, want = "sum", strconv.Itoa(tasks*(tasks-1)/2)
					}
					res, st, err := cl.Run(ctx, spec)
					if err != nil || st.State != wire.StateDone || string(res) != want {
						t.Fatalf("got %s, %+v, %v; want %s", res, st, err, want)
					}
					if d := time.Duration(st.Ended - st.Submitted); d < 0 || d > 5*time.Second {
						t.Errorf("the job ran %v by the coordinator's clock", d)
					}
					evs, _, err := cl.Events(ctx, st.ID)
					if err != nil {
						t.Fatal(err)
					}
					done := 0
					for _, ev := range evs {
						if ev.Type == wire.EventDone {
							done++
						}
					}
					if wantDone := st.Total; done < wantDone {
						t.Errorf("Events replayed %d done events, want at least %d", done, wantDone)
					}
				})
			}
		}
	})
}

// A record on a job's end subject that is not the job's end (not an end
// record, another job's end, a state that is not final) is logged and
// ignored by a waiting client: only the coordinator's end decides.
func TestMalformedEndRecordIgnored(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b := tb.connect(t, "coordinator")
		c, _ := newCoordinator(t, b, coordinator.Config{})
		cl := client.New(tb.connect(t, "submitter"))
		cl.Logger = logger(t)
		id, err := cl.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Pool: "manual", Function: "echo", Data: wire.Value(`{"x":7}`)})
		if err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		var got wire.JobStatus
		go func() {
			var err error
			got, err = cl.Wait(ctx, id)
			waited <- err
		}()
		other, _ := wire.Encode(wire.KindEnd, wire.End{Status: wire.JobStatus{ID: "someone-else", State: wire.StateFailed}})
		running, _ := wire.Encode(wire.KindEnd, wire.End{Status: wire.JobStatus{ID: id, State: wire.StateRunning}})
		notEnd, _ := wire.Encode(wire.KindPublished, wire.Published{Job: id})
		for _, data := range [][]byte{[]byte("garbage"), nil, other, running, notEnd} {
			if err := b.Publish(ctx, wire.JobEndSubject(id), bus.Message{Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		// Play the runtime: the job ends done after those records.
		task := take(t, b, "manual", 1)[0]
		publishEvents(t, b, id, wire.Event{Job: id, Task: 0, Kind: wire.TaskCall, Attempt: task.Attempt, Type: wire.EventDone, Result: wire.Value("7"), Finished: time.Now().UnixNano()})
		if _, err := c.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := <-waited; err != nil || got.State != wire.StateDone || got.ID != id {
			t.Fatalf("Wait: %+v, %v; want the job done", got, err)
		}
		res, err := cl.Result(ctx, id)
		if err != nil || string(res) != "7" {
			t.Fatalf("result %s, %v", res, err)
		}
	})
}
