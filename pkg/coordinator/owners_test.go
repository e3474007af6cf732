package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// joinCoordinator starts a coordinator on b that joins its namespace
// (Recover) before it serves, as `coordinator` does.
func joinCoordinator(t *testing.T, b bus.Bus, cfg coordinator.Config) (*coordinator.Coordinator, func()) {
	t.Helper()
	return startCoordinator(t, b, cfg, true)
}

// sleepValues is iterdata for n sleeps of secs returning "<tag>/<i>", and
// the exact result expected.
func sleepValues(tag string, n int, secs float64) (wire.Value, string) {
	in, out := []byte{'['}, []byte{'['}
	for i := 0; i < n; i++ {
		if i > 0 {
			in, out = append(in, ','), append(out, ',')
		}
		in = fmt.Appendf(in, `{"x":%g,"value":"%s/%d"}`, secs, tag, i)
		out = fmt.Appendf(out, `"%s/%d"`, tag, i)
	}
	return wire.Value(append(in, ']')), string(append(out, ']'))
}

// Three coordinators share a namespace: submitted jobs spread over them,
// any of them answers for any job, and when the one holding the most
// jobs dies, the others take its jobs over from the log: every job ends
// done with its exact result, once. A finished job whose owner then dies
// still gives its results (rebuilt from the event stream).
func TestCoordinatorsShareANamespace(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 8)
		type coord struct {
			c    *coordinator.Coordinator
			kill func()
		}
		var cs []coord
		for i := range 3 {
			c, kill := joinCoordinator(t, tb.connect(t, fmt.Sprintf("coordinator-%d", i)), coordinator.Config{})
			cs = append(cs, coord{c, kill})
		}
		cl := client.New(tb.connect(t, "submitter"))
		const jobs, tasks = 12, 30
		ids := make([]string, jobs)
		want := map[string]string{}
		for k := range ids {
			iter, res := sleepValues(fmt.Sprintf("j%d", k), tasks, 0.1)
			id, err := cl.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: iter})
			if err != nil {
				t.Fatal(err)
			}
			ids[k], want[id] = id, res
		}
		owners := map[string][]string{}
		for _, id := range ids {
			st, err := cl.Status(ctx, id)
			if err != nil || st.Owner == "" {
				t.Fatalf("status of %s: %+v, %v", id, st, err)
			}
			owners[st.Owner] = append(owners[st.Owner], id)
		}
		if len(owners) < 2 {
			t.Fatalf("every job went to one coordinator: %v", owners)
		}
		// Kill the coordinator that holds the most jobs.
		victim := 0
		for i, c := range cs {
			if len(owners[c.c.ID()]) > len(owners[cs[victim].c.ID()]) {
				victim = i
			}
		}
		dead := cs[victim].c.ID()
		t.Logf("jobs per coordinator: %v; killing %s", owners, dead)
		cs[victim].kill()

		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := cl.Wait(ctx, id)
				if err != nil || st.State != wire.StateDone {
					t.Errorf("job %s: %+v, %v", id, st, err)
					return
				}
				res, err := cl.Result(ctx, id)
				if err != nil || string(res) != want[id] {
					t.Errorf("job %s: result %.200s, %v", id, res, err)
				}
			}()
		}
		wg.Wait()
		takenOver := 0
		for _, id := range owners[dead] {
			st, err := cl.Status(ctx, id)
			if err != nil || st.Owner == "" {
				t.Errorf("job %s of the dead coordinator: owner after the takeover %q, %v", id, st.Owner, err)
			}
			if st.Owner != dead {
				takenOver++ // else it ended as its owner was killed
			}
			if n := ends(t, tb.connect(t, "reader"), st); n != 1 {
				t.Errorf("job %s has %d end records, want 1", id, n)
			}
		}

		if takenOver == 0 {
			t.Errorf("none of the dead coordinator's %d jobs was taken over", len(owners[dead]))
		}

		// Kill a survivor: its finished jobs' results are rebuilt by the
		// last one from the stream.
		var last coord
		for i, c := range cs {
			if i == victim {
				continue
			}
			if last.c == nil {
				last = c
				continue
			}
			c.kill()
		}
		for _, id := range ids {
			res, err := cl.Result(ctx, id)
			if err != nil || string(res) != want[id] {
				t.Errorf("job %s after its owner died: result %.200s, %v", id, res, err)
			}
		}
	})
}

// cutBus is a coordinator's connection that can be cut off from the
// broker: while cut, its broadcasts are lost and its publications hang
// until their context ends, as on a partitioned connection. While mute,
// only its broadcasts (heartbeats) are lost, as when they come back too
// late from a busy connection.
type cutBus struct {
	bus.Bus
	cut, mute atomic.Bool
}

var errCut = errors.New("cut off from the broker")

func (b *cutBus) wait(ctx context.Context) error {
	if !b.cut.Load() {
		return nil
	}
	<-ctx.Done()
	return errors.Join(errCut, ctx.Err())
}

func (b *cutBus) Notify(ctx context.Context, subject string, data []byte) error {
	if b.cut.Load() || b.mute.Load() {
		return nil
	}
	return b.Bus.Notify(ctx, subject, data)
}

func (b *cutBus) Enqueue(ctx context.Context, queue string, msgs ...bus.Message) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	return b.Bus.Enqueue(ctx, queue, msgs...)
}

func (b *cutBus) Publish(ctx context.Context, subject string, m bus.Message) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	return b.Bus.Publish(ctx, subject, m)
}

func (b *cutBus) PublishSeq(ctx context.Context, subject string, m bus.Message) (uint64, error) {
	if err := b.wait(ctx); err != nil {
		return 0, err
	}
	return b.Bus.PublishSeq(ctx, subject, m)
}

// A coordinator cut off from the broker stops acting on its job before
// another takes the job over; the job then completes under the new owner
// with its exact result.
func TestCutOffCoordinatorStopsBeforeTakeover(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 4)
		lease := time.Second
		ab := &cutBus{Bus: tb.connect(t, "coordinator-a")}
		a, _ := joinCoordinator(t, ab, coordinator.Config{Lease: lease})
		iter, want := sleepValues("cut", 40, 0.1)
		id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: iter})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := joinCoordinator(t, tb.connect(t, "coordinator-b"), coordinator.Config{Lease: lease})
		waitFor(t, time.Minute, "the first tasks done", func() bool { return statusOf(a, id).Done >= 3 })

		ab.cut.Store(true)
		cutAt := time.Now()
		var aStopped, bTook time.Time
		waitFor(t, time.Minute, "the job taken over", func() bool {
			now := time.Now()
			if _, err := a.Status(id); aStopped.IsZero() && errors.Is(err, coordinator.ErrUnknownJob) {
				aStopped = now
			}
			if st, err := b.Status(id); err == nil && st.Owner == b.ID() {
				bTook = now
			}
			return !bTook.IsZero()
		})
		if aStopped.IsZero() || !aStopped.Before(bTook) {
			t.Fatalf("the cut-off coordinator stopped at %v, the other took over at %v (after the cut)", aStopped.Sub(cutAt), bTook.Sub(cutAt))
		}
		t.Logf("cut-off coordinator stopped %v after the cut, the job was taken over %v after it", aStopped.Sub(cutAt), bTook.Sub(cutAt))
		ab.cut.Store(false) // back: it must not take the job again

		cl := client.New(tb.connect(t, "submitter"))
		st, err := cl.Wait(ctx, id)
		if err != nil || st.State != wire.StateDone {
			t.Fatalf("job: %+v, %v", st, err)
		}
		res, err := cl.Result(ctx, id)
		if err != nil || string(res) != want {
			t.Fatalf("result %.200s, %v", res, err)
		}
		if _, err := a.Status(id); !errors.Is(err, coordinator.ErrUnknownJob) {
			t.Errorf("the coordinator that was cut off holds the job again: %v", err)
		}
		if n := ends(t, tb.connect(t, "reader"), st); n != 1 {
			t.Errorf("%d end records, want 1", n)
		}
	})
}

// A lone coordinator whose lease lapses (its heartbeats do not come back
// for a while: a busy moment) still accepts jobs, and acts on them and on
// those it dropped once its lease holds again: every job completes.
func TestLeaseLapseLosesNoJob(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 4)
		ab := &cutBus{Bus: tb.connect(t, "coordinator")}
		a, _ := joinCoordinator(t, ab, coordinator.Config{Lease: time.Second})
		cl := client.New(tb.connect(t, "submitter"))
		iter1, want1 := sleepValues("before", 20, 0.1)
		id1, err := cl.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: iter1})
		if err != nil {
			t.Fatal(err)
		}
		ab.mute.Store(true)
		waitFor(t, time.Minute, "the running job dropped", func() bool {
			_, err := a.Status(id1)
			return errors.Is(err, coordinator.ErrUnknownJob)
		})
		iter2, want2 := sleepValues("lapsed", 20, 0.05)
		id2, err := cl.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: iter2})
		if err != nil {
			t.Fatalf("a submit while the lease has lapsed: %v", err)
		}
		ab.mute.Store(false)
		for id, want := range map[string]string{id1: want1, id2: want2} {
			st, err := cl.Wait(ctx, id)
			if err != nil || st.State != wire.StateDone {
				t.Fatalf("job %s: %+v, %v", id, st, err)
			}
			res, err := cl.Result(ctx, id)
			if err != nil || string(res) != want {
				t.Fatalf("job %s: result %.200s, %v", id, res, err)
			}
			if n := ends(t, tb.connect(t, "reader"), st); n != 1 {
				t.Errorf("job %s: %d end records, want 1", id, n)
			}
		}
	})
}
