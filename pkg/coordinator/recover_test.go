package coordinator_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// A coordinator is "killed" by closing it: Close abandons its jobs (no end
// record, tasks left on the queue), as a SIGKILL would. A new coordinator
// on another connection then Recovers.

func n(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

func statusOf(c *coordinator.Coordinator, id string) wire.JobStatus {
	st, _ := c.Status(id)
	return st
}

// ends counts the end records of a job on the log.
func ends(t *testing.T, b bus.Bus, st wire.JobStatus) int {
	return len(logRecords(t, b, wire.JobEndSubject(st.ID), st.From))
}

// The reproduction of issue 12's fault 3: on a stream busy with another
// job's events (20,000 tasks; on RabbitMQ the client filters them, which
// looked like silence to a recovery that waited for quiet), a restarted
// coordinator takes up the running job, not the finished one, and both
// end exactly once.
func TestRecoverWithBusyStream(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 8)
		ab := tb.connect(t, "coordinator-a")
		a, killA := newCoordinator(t, ab, coordinator.Config{})
		big := n(20000, 4000)
		id1, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value(indexList(big))})
		if err != nil {
			t.Fatal(err)
		}
		st1, err := a.Wait(ctx, id1)
		if err != nil || st1.State != wire.StateDone {
			t.Fatalf("the busy job: %+v, %v", st1, err)
		}
		const small = 300
		id2, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: sleepIter(small, 0.1)})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the second job under way", func() bool { return statusOf(a, id2).Done >= 20 })
		from2 := statusOf(a, id2).From
		killA()

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(taken, []string{id2}) {
			t.Fatalf("recovered %v, want only the running job %s (the finished one is %s)", taken, id2, id1)
		}
		st2, err := client.New(bb).Wait(ctx, id2)
		if err != nil || st2.State != wire.StateDone || st2.Done != small || st2.From != from2 {
			t.Fatalf("the recovered job: %+v, %v (its spec is at %d)", st2, err, from2)
		}
		res, err := client.New(bb).Result(ctx, id2)
		if err != nil || string(res) != indexList(small) {
			t.Fatalf("the recovered job's result: %.200s, %v", res, err)
		}
		if n := ends(t, bb, st1); n != 1 {
			t.Errorf("the finished job has %d end records, want 1", n)
		}
		if n := ends(t, bb, st2); n != 1 {
			t.Errorf("the recovered job has %d end records, want 1", n)
		}
	})
}

// A coordinator killed while it publishes a job's tasks: the new one
// replays the job's events to the position it recorded when it took the
// job up, then publishes the tasks that have no outcome; every result is
// there once, in order.
func TestRecoverDuringPublishing(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 8)
		ab := tb.connect(t, "coordinator-a")
		a, killA := newCoordinator(t, ab, coordinator.Config{})
		tasks := n(3000, 1000)
		// One task per publish: publishing takes long enough to be cut.
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "echo", Iterdata: wire.Value(indexList(tasks)), InvokePoolThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the first tasks done", func() bool { return statusOf(a, id).Done >= 20 })
		st := statusOf(a, id)
		killA()
		if got := logRecords(t, ab, wire.JobPublishedSubject(id), st.From); len(got) != 0 {
			t.Fatalf("every task was published before the coordinator closed: the test did not cut the publishing")
		}

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || !slices.Equal(taken, []string{id}) {
			t.Fatalf("recovered %v, %v; want %s", taken, err, id)
		}
		cl := client.New(bb)
		end, err := cl.Wait(ctx, id)
		if err != nil || end.State != wire.StateDone || end.Done != tasks {
			t.Fatalf("the recovered job: %+v, %v", end, err)
		}
		res, err := cl.Result(ctx, id)
		if err != nil || string(res) != indexList(tasks) {
			t.Fatalf("result %.200s…, %v", res, err)
		}
		if got := logRecords(t, bb, wire.JobPublishedSubject(id), st.From); len(got) != 1 {
			t.Errorf("%d records that the tasks are published, want 1 (by the new coordinator)", len(got))
		}
	})
}

// A coordinator killed while a map-reduce job's reducer is being fed: the
// new one replays the maps' events, feeds the reducer from the job's
// position, and the reduce result is exact.
func TestRecoverDuringReduce(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 8)
		ab := tb.connect(t, "coordinator-a")
		a, killA := newCoordinator(t, ab, coordinator.Config{})
		tasks := n(200, 80)
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMapReduce, Function: "sleep", Iterdata: sleepIter(tasks, 0.05), ReduceFunction: "sum"})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "half the maps done", func() bool { return statusOf(a, id).Done >= tasks/2 })
		killA()

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || !slices.Equal(taken, []string{id}) {
			t.Fatalf("recovered %v, %v; want %s", taken, err, id)
		}
		cl := client.New(bb)
		end, err := cl.Wait(ctx, id)
		if err != nil || end.State != wire.StateDone {
			t.Fatalf("the recovered job: %+v, %v", end, err)
		}
		res, err := cl.Result(ctx, id)
		if want := strconv.Itoa(tasks * (tasks - 1) / 2); err != nil || string(res) != want {
			t.Fatalf("reduce result %s, %v; want %s", res, err, want)
		}
		// The reducer was queued before the kill (the job log says so):
		// the new coordinator does not queue it again, so one reducer ran.
		// A second one would have started at once on the idle runtime.
		st := statusOf(b, id)
		reducers := func() int {
			n := 0
			for _, m := range logRecords(t, bb, wire.TaskEvents(id), st.From) {
				batch, err := coordinator.DecodeEvents(m.Data)
				if err != nil {
					continue
				}
				for _, ev := range batch {
					if ev.Kind == wire.TaskReduce && (ev.Type == wire.EventDone || ev.Type == wire.EventFailed) {
						n++
					}
				}
			}
			return n
		}
		time.Sleep(time.Second) // time for a second reducer, if any, to end
		if n := reducers(); n != 1 {
			t.Errorf("%d reducers ended, want 1", n)
		}
	})
}

// A job that ended before the restart is not taken up again: it keeps its
// one end record, and a client waiting for it gets that end.
func TestRecoverAfterEnd(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 4)
		ab := tb.connect(t, "coordinator-a")
		a, killA := newCoordinator(t, ab, coordinator.Config{})
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMapReduce, Function: "echo", Iterdata: wire.Value(indexList(10)), ReduceFunction: "sum"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Wait(ctx, id)
		if err != nil || st.State != wire.StateDone {
			t.Fatalf("job: %+v, %v", st, err)
		}
		killA()

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || len(taken) != 0 {
			t.Fatalf("recovered %v, %v; want nothing", taken, err)
		}
		if _, err := b.Status(id); err == nil {
			t.Errorf("the new coordinator holds the ended job")
		}
		if n := ends(t, bb, st); n != 1 {
			t.Errorf("the job has %d end records, want 1", n)
		}
		// Its events are on the log from its position to its end.
		evs := 0
		for _, m := range logRecords(t, bb, wire.TaskEvents(id), st.From) {
			if batch, err := coordinator.DecodeEvents(m.Data); err == nil {
				evs += len(batch)
			}
		}
		if evs < 11 {
			t.Errorf("%d events on the log, want at least one per map and the reducer's", evs)
		}
	})
}

// A job taken up after a restart keeps the deadline the coordinator that
// accepted it recorded in its spec (its own clock, not the submitter's):
// it times out then, not a whole timeout after the restart, and not at
// once for a submitter whose clock was behind.
func TestRecoverKeepsDeadline(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ab := tb.connect(t, "coordinator-a")
		a, killA := newCoordinator(t, ab, coordinator.Config{})
		const timeout = 3 * time.Second
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "nobody", Function: "noop", Iterdata: wire.Value(`[1,2]`),
			TimeoutMS: timeout.Milliseconds(), SubmittedAt: time.Now().Add(-10 * time.Second).UnixNano()})
		if err != nil {
			t.Fatal(err)
		}
		accepted := time.Unix(0, statusOf(a, id).Submitted)
		killA()
		waitFor(t, timeout, "a third of the timeout gone", func() bool { return time.Since(accepted) > timeout/3 })

		b, _ := newCoordinator(t, tb.connect(t, "coordinator-b"), coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || !slices.Equal(taken, []string{id}) {
			t.Fatalf("recovered %v, %v; want %s", taken, err, id)
		}
		st, err := b.Wait(ctx, id)
		if err != nil || st.State != wire.StateTimedOut {
			t.Fatalf("the recovered job: %+v, %v; want it timed out", st, err)
		}
		if st.Submitted != accepted.UnixNano() {
			t.Errorf("the recovered job was submitted at %v, the first coordinator accepted it at %v", time.Unix(0, st.Submitted), accepted)
		}
		if ran := time.Duration(st.Ended - accepted.UnixNano()); ran < timeout || ran > timeout+time.Second {
			t.Errorf("the recovered job timed out %v after it was accepted, want its timeout of %v", ran, timeout)
		}
	})
}

// A record on a running job's end subject that is not its end (garbage,
// another job's end, a state that is not final) does not make a
// restarted coordinator leave the job behind.
func TestRecoverIgnoresMalformedEndRecords(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ab := tb.connect(t, "coordinator-a")
		a, killA := newCoordinator(t, ab, coordinator.Config{})
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Pool: "manual", Function: "echo", Iterdata: wire.Value(`[1,2,3]`)})
		if err != nil {
			t.Fatal(err)
		}
		tasks := take(t, ab, "manual", 3)
		killA()
		other, _ := wire.Encode(wire.KindEnd, wire.End{Status: wire.JobStatus{ID: "someone-else", State: wire.StateDone}})
		running, _ := wire.Encode(wire.KindEnd, wire.End{Status: wire.JobStatus{ID: id, State: wire.StateRunning}})
		for _, data := range [][]byte{[]byte("garbage"), other, running} {
			if err := ab.Publish(ctx, wire.JobEndSubject(id), bus.Message{Data: data}); err != nil {
				t.Fatal(err)
			}
		}

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || !slices.Equal(taken, []string{id}) {
			t.Fatalf("recovered %v, %v; want %s", taken, err, id)
		}
		for _, task := range tasks {
			publishEvents(t, bb, id, wire.Event{Job: id, Task: task.Index, Kind: wire.TaskMap, Attempt: task.Attempt, Type: wire.EventDone,
				Result: wire.Value(strconv.Itoa(task.Index + 1)), Finished: time.Now().UnixNano()})
		}
		st, err := client.New(bb).Wait(ctx, id)
		if err != nil || st.State != wire.StateDone {
			t.Fatalf("the recovered job: %+v, %v", st, err)
		}
		if res, err := client.New(bb).Result(ctx, id); err != nil || string(res) != "[1,2,3]" {
			t.Fatalf("result %s, %v", res, err)
		}
	})
}

// A coordinator killed while it publishes a job's tasks: the one that
// takes the job up publishes only the tasks the job log does not say are
// queued already, so no task runs twice, whether or not the bus drops
// duplicate publications (RabbitMQ does not; JetStream only within its
// deduplication window).
func TestRecoverRepublishesOnlyUnqueued(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		ab := tb.connect(t, "coordinator-a")
		// A record of the progress after every task published, so that
		// the test can cut the publishing where it likes.
		a, killA := newCoordinator(t, ab, coordinator.Config{QueuedEvery: time.Nanosecond})
		tasks := n(4000, 2000)
		// One task per publish, and no runtime yet: every task published
		// stays on the queue.
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "echo", Iterdata: wire.Value(indexList(tasks)), InvokePoolThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		st := statusOf(a, id)
		qctx, qstop := context.WithTimeout(ctx, time.Minute)
		recs, err := ab.Subscribe(qctx, wire.JobQueuedSubject(id), bus.SubscribeOptions{From: st.From})
		if err != nil {
			t.Fatal(err)
		}
		through := 0
		for m := range recs {
			var q wire.Queued
			if err := wire.Decode(m.Data, wire.KindQueued, &q); err != nil {
				t.Fatal(err)
			}
			if through = q.Through; through >= tasks/3 {
				break
			}
		}
		qstop()
		if through < tasks/3 {
			t.Fatalf("the job log says %d tasks queued after a minute, want %d", through, tasks/3)
		}
		killA()
		if got := logRecords(t, ab, wire.JobPublishedSubject(id), st.From); len(got) != 0 {
			t.Fatalf("every task was published before the coordinator closed: the test did not cut the publishing")
		}

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, coordinator.Config{})
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || !slices.Equal(taken, []string{id}) {
			t.Fatalf("recovered %v, %v; want %s", taken, err, id)
		}
		startRuntime(t, tb.connect(t, "runtime"), 8)
		cl := client.New(bb)
		end, err := cl.Wait(ctx, id)
		if err != nil || end.State != wire.StateDone || end.Done != tasks {
			t.Fatalf("the recovered job: %+v, %v", end, err)
		}
		res, err := cl.Result(ctx, id)
		if err != nil || string(res) != indexList(tasks) {
			t.Fatalf("result %.200s…, %v", res, err)
		}
		// Every run of a task leaves an event. The tasks the job log
		// records as queued ran once; of the others, at most the one whose
		// publication the kill cut (one task per publish) ran twice.
		queued := 0
		for _, m := range logRecords(t, bb, wire.JobQueuedSubject(id), st.From) {
			var q wire.Queued
			if err := wire.Decode(m.Data, wire.KindQueued, &q); err == nil {
				queued = max(queued, q.Through)
			}
		}
		runs := make([]int, tasks)
		for _, m := range logRecords(t, bb, wire.TaskEvents(id), st.From) {
			batch, err := coordinator.DecodeEvents(m.Data)
			if err != nil {
				continue // the coordinator's own marks
			}
			for _, ev := range batch {
				if ev.Type == wire.EventDone {
					runs[ev.Task]++
				}
			}
		}
		var twice []int
		for i, r := range runs {
			switch {
			case r == 0:
				t.Errorf("task %d never ran", i)
			case r > 1 && i < queued:
				t.Errorf("task %d ran %d times, and the job log recorded it queued (tasks 0…%d)", i, r, queued-1)
			case r > 1:
				twice = append(twice, i)
			}
		}
		if len(twice) > 1 {
			t.Errorf("tasks %v ran more than once; only the one published as the coordinator died may", twice)
		}
	})
}
