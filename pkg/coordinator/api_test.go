package coordinator

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// A coordinator that does not hold a job answers for it through the API
// all the same: status and cancel are forwarded to the owner, and once the
// job has ended, its status comes from the job log.
func TestAPIForwardsToTheOwner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, _, b := ownerAndPeer(t, ctx)

	id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: wire.Value(`[{"x":30},{"x":30},{"x":30}]`)})
	if err != nil {
		t.Fatal(err)
	}
	req := &wire.Request{Job: id}
	resp, err := b.answer(ctx, wire.APIStatus, req, 1<<20)
	if err != nil || resp.Status == nil || resp.Status.State != wire.StateRunning || resp.Status.Owner != a.ID() {
		t.Fatalf("status through the other coordinator: %+v, %v", resp.Status, err)
	}
	resp, err = b.answer(ctx, wire.APICancel, req, 1<<20)
	if err != nil || resp.Status == nil || resp.Status.State != wire.StateCancelled {
		t.Fatalf("cancel through the other coordinator: %+v, %v", resp.Status, err)
	}
	if st, _ := a.Status(id); st.State != wire.StateCancelled {
		t.Fatalf("the owner's status after the cancel: %+v", st)
	}
	a.Close() // the owner is gone: the status comes from the job log
	resp, err = b.answer(ctx, wire.APIStatus, req, 1<<20)
	if err != nil || resp.Status == nil || resp.Status.State != wire.StateCancelled {
		t.Fatalf("status of the ended job from the job log: %+v, %v", resp.Status, err)
	}
}

// ownerAndPeer starts an embedded server with two coordinators of one
// namespace (a with its bus connection, and b; leases of a second) and a
// runtime of two slots, all stopped with the test.
func ownerAndPeer(t *testing.T, ctx context.Context) (a *Coordinator, ab bus.Bus, b *Coordinator) {
	t.Helper()
	srv := natstest.Server(t)
	a, ab = joinEmbedded(t, ctx, srv, "a", Config{Lease: time.Second})
	b, _ = joinEmbedded(t, ctx, srv, "b", Config{Lease: time.Second})
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime"})
	rt, err := runtime.New(rb, runtime.Config{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rstop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { rstop(); <-done })
	return a, ab, b
}

// joinEmbedded connects a coordinator named name to srv, joins its
// namespace (Recover) and serves, as `coordinator` does; it returns the
// coordinator and its bus connection, both closed with the test.
func joinEmbedded(t *testing.T, ctx context.Context, srv *natsbus.Embedded, name string, cfg Config) (*Coordinator, bus.Bus) {
	t.Helper()
	b := natstest.Connect(t, srv, natsbus.Options{Name: name})
	c, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Recover(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	t.Cleanup(scancel)
	if err := c.Serve(sctx); err != nil {
		t.Fatal(err)
	}
	return c, b
}

// A finished job whose owner is gone is rebuilt from the event stream
// when its results are asked for (replay.go). A request that comes while
// the rebuild runs waits for it: it used to be answered from the
// half-rebuilt job, "running", and a submit that had already seen the
// job's end then failed with "has not finished (state running)" (found by
// TestFleetRabbitMQ: a coordinator killed just after a job's end, the
// submit's result request sent again to a coordinator still rebuilding).
func TestAnswerDuringAReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, ab, b := ownerAndPeer(t, ctx)

	// Big enough that its rebuild takes a while.
	const n = 50000
	id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value("[null" + strings.Repeat(",null", n-1) + "]")})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Wait(ctx, id); err != nil || st.State != wire.StateDone {
		t.Fatalf("the job: %+v, %v", st, err)
	}
	a.Close()
	_ = ab.Close() // gone: nothing answers for it any more

	// The first request starts the rebuild.
	check := func(what string, resp wire.Response, err error) {
		t.Helper()
		if err != nil || resp.Status == nil || resp.Status.State != wire.StateDone {
			t.Errorf("%s: %+v, %v; want the job done", what, resp.Status, err)
		}
	}
	first := make(chan struct{})
	go func() {
		defer close(first)
		resp, err := b.answer(ctx, wire.APIResult, &wire.Request{Job: id}, 1<<20)
		check("the result request that started the rebuild", resp, err)
	}()
	var j *job
	for j == nil && ctx.Err() == nil {
		select {
		case <-first:
			t.Fatal("first answered without a replay")
		default:
		}
		b.mu.Lock()
		j = b.jobs[id]
		b.mu.Unlock()
		time.Sleep(50 * time.Microsecond)
	}
	if j == nil {
		t.Fatalf("no rebuild started: %v", ctx.Err())
	}
	select {
	case <-j.done:
		t.Fatal("the rebuild ended before the test asked during it: make the job bigger")
	default:
	}
	// Asked while it runs: the in-process status (the dashboard's job
	// page) first, before anything waits for the rebuild.
	if st, err := b.Status(id); err != nil || st.State != wire.StateDone || st.Done != n {
		t.Errorf("Status during the rebuild: %+v, %v; want the job done", st, err)
	}
	for _, op := range []string{wire.APIStatus, wire.APIResult} {
		resp, err := b.answer(ctx, op, &wire.Request{Job: id}, 1<<20)
		check(op+" during the rebuild", resp, err)
		if op == wire.APIResult && err == nil && resp.Total != n {
			t.Errorf("result during the rebuild: %d results, want %d", resp.Total, n)
		}
	}
	<-first
}

// A submit and its copy (a client's retry of the same job id, sent when
// no answer came soon enough) that reach two coordinators at once start
// one job, not two: the first spec record of the id on the job log wins,
// and both answer with that job's status. (A client sends a copy beside a
// request unanswered for a second, client.HedgeAfter, so a coordinator
// slow to record the spec meets its copy on another.)
func TestSubmitAndItsCopyStartOneJob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, _, b := ownerAndPeer(t, ctx)
	const n = 20
	for k := range n {
		id := NewJobID()
		sa, sb := submitAndCopy(t, ctx, a, b, id)
		a.mu.Lock()
		_, inA := a.jobs[id]
		a.mu.Unlock()
		b.mu.Lock()
		_, inB := b.jobs[id]
		b.mu.Unlock()
		if inA == inB {
			t.Fatalf("job %d: held by the first coordinator %v, by the second %v; want exactly one", k, inA, inB)
		}
		if sa.Status.Owner != sb.Status.Owner {
			t.Fatalf("job %d: the answers name owners %s and %s", k, sa.Status.Owner, sb.Status.Owner)
		}
	}
}

// TestSubmitAndItsCopyOnOneCoordinator: a submit and the copy the client
// sent beside it (a first attempt slow to be answered) reach the same
// coordinator at once. Both are answered with the one job's status and
// its stream position; neither is told "a job with this id exists"
// (the first answer wins at the client: such an answer failed a submit
// whose job ran).
func TestSubmitAndItsCopyOnOneCoordinator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, joined := range []bool{true, false} {
		var a *Coordinator
		if joined {
			a, _, _ = ownerAndPeer(t, ctx)
		} else {
			srv := natstest.Server(t)
			ab := natstest.Connect(t, srv, natsbus.Options{Name: "standalone"})
			var err error
			if a, err = New(ab, Config{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Close() })
		}
		const n = 20
		for k := range n {
			sa, sb := submitAndCopy(t, ctx, a, a, NewJobID())
			if sa.Status.From == 0 || sa.Status.From != sb.Status.From {
				t.Fatalf("joined %v, job %d: the answers give stream positions %d and %d", joined, k, sa.Status.From, sb.Status.From)
			}
		}
	}
}

// submitAndCopy sends a submit of job id to a and its copy (a retry) to
// b at once, as a client that sent a copy beside a slow first attempt,
// and returns both answers, each of which must be the job's status.
func submitAndCopy(t *testing.T, ctx context.Context, a, b *Coordinator, id string) (sa, sb wire.Response) {
	t.Helper()
	spec := func() *wire.JobSpec {
		return &wire.JobSpec{ID: id, Kind: wire.JobMap, Function: "sleep", Iterdata: wire.Value(`[{"x":1000},{"x":1000}]`)}
	}
	var wg sync.WaitGroup
	var ea, eb error
	wg.Add(2)
	go func() { defer wg.Done(); sa, ea = a.answerSubmit(ctx, &wire.Request{Spec: spec()}, 1<<20) }()
	go func() { defer wg.Done(); sb, eb = b.answerSubmit(ctx, &wire.Request{Spec: spec(), Retry: true}, 1<<20) }()
	wg.Wait()
	if ea != nil || eb != nil || sa.Status == nil || sb.Status == nil || sa.Status.ID != id || sb.Status.ID != id {
		t.Fatalf("job %s: the answers: %+v, %v and %+v, %v", id, sa.Status, ea, sb.Status, eb)
	}
	return sa, sb
}
