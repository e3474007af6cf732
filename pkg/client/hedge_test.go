package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestCopiesComeFasterAfterTheFirst: a request unanswered for HedgeAfter
// gets a copy, and then one each quarter of HedgeAfter, never more than
// 32 in all. Where one of two coordinators is stuck, each copy meets it
// by chance; copies a whole HedgeAfter apart left one request in eight
// unanswered after 3 s.
func TestCopiesComeFasterAfterTheFirst(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := natstest.Connect(t, srv, natsbus.Options{Name: "stuck"})
	unstick := make(chan struct{})
	defer close(unstick)
	var took atomic.Int64
	if err := sb.Serve(ctx, wire.APIStatus, func(ctx context.Context, m bus.Message) ([]byte, error) {
		took.Add(1)
		<-unstick
		return nil, context.Canceled
	}); err != nil {
		t.Fatal(err)
	}
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "client"})
	c := client.New(cb)
	c.HedgeAfter = 400 * time.Millisecond
	c.RequestTimeout = time.Minute
	rctx, rcancel := context.WithTimeout(ctx, 1450*time.Millisecond)
	_, err := c.Status(rctx, "j1")
	rcancel()
	if err == nil {
		t.Fatal("a stuck coordinator answered")
	}
	// Sent at 0 and 400 ms, then each 100 ms: 12 by 1.45 s (5 with
	// copies a HedgeAfter apart).
	if n := took.Load(); n < 8 {
		t.Fatalf("the request and its copies in 1.45 s: %d; want about 12", n)
	}

	// A longer wait: 32 at most.
	rctx, rcancel = context.WithTimeout(ctx, 5*time.Second)
	took.Store(0)
	_, _ = c.Status(rctx, "j1")
	rcancel()
	if n := took.Load(); n != 32 {
		t.Fatalf("the request and its copies in 5 s: %d; want 32", n)
	}
}

// TestCopiesOfASlowSubmitAreHeld: a coordinator still taking a job (2 s
// in its Expand hook here) answers the copies a client sends beside the
// slow first attempt at once, as held, and the client sends no more of
// them while the first is out. Before, each copy waited on the
// coordinator for the first to finish, a request handler apiece, and the
// client sent one every quarter of HedgeAfter: 17 requests for this
// submit. A first attempt given up on (RequestTimeout) while the
// coordinator still takes it leaves only held copies: one more goes each
// HedgeAfter until the job is there.
func TestCopiesOfASlowSubmitAreHeld(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	co := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator"})
	slow := func(ctx context.Context, spec *wire.JobSpec, elems []wire.Value, extra map[string]wire.Value) ([]coordinator.Input, []*wire.Object, error) {
		time.Sleep(2 * time.Second)
		return nil, nil, nil // Lithops' plain rules
	}
	serveCoordinator(t, ctx, co, coordinator.Config{Hooks: coordinator.Hooks{Expand: slow}})
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "client"})
	var sent atomic.Int64
	sub, err := cb.Conn().Subscribe("skein.rpc."+wire.APISubmit, func(*nats.Msg) { sent.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cl := client.New(cb)
	cl.HedgeAfter = 400 * time.Millisecond
	st, err := cl.SubmitStatus(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value(`[1,2,3]`)})
	if err != nil || st.ID == "" || st.Total != 3 || st.From == 0 {
		t.Fatalf("the slow submit's answer: %+v, %v", st, err)
	}
	// The first attempt at 0 and one copy at 400 ms, answered held; not
	// one each 100 ms until 2 s.
	if n := sent.Load(); n > 3 {
		t.Fatalf("the submit and its copies: %d requests in 2 s; want 2 (3 at most)", n)
	}

	sent.Store(0)
	cl.RequestTimeout = 300 * time.Millisecond
	start := time.Now()
	st, err = cl.SubmitStatus(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value(`[1,2]`)})
	if err != nil || st.Total != 2 || st.From == 0 {
		t.Fatalf("the slow submit given up on once: %+v, %v", st, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the slow submit given up on once was answered after %v; want soon after its 2 s", d)
	}
	t.Logf("the submit given up on once: answered after %v, %d requests", time.Since(start).Round(time.Millisecond), sent.Load())
	// At 0 (given up on at 300 ms), then one each 400 ms: about 6.
	if n := sent.Load(); n > 9 {
		t.Fatalf("the submit given up on once and its copies: %d requests in 2 s; want about 6", n)
	}
}
