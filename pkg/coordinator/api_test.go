package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// A coordinator that does not hold a job answers for it through the API
// all the same: status and cancel are forwarded to the owner, and once the
// job has ended, its status comes from the job log.
func TestAPIForwardsToTheOwner(t *testing.T) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, _ := joinEmbedded(t, ctx, srv, "a", Config{Lease: time.Second})
	b, _ := joinEmbedded(t, ctx, srv, "b", Config{Lease: time.Second})
	rb, err := srv.Connect(ctx, natsbus.Options{Name: "runtime"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rb.Close() })
	rt, err := runtime.New(rb, runtime.Config{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { rstop(); <-done })

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

// joinEmbedded connects a coordinator named name to srv, joins its
// namespace (Recover) and serves, as `coordinator` does; it returns the
// coordinator and its bus connection, both closed with the test.
func joinEmbedded(t *testing.T, ctx context.Context, srv *natsbus.Embedded, name string, cfg Config) (*Coordinator, bus.Bus) {
	t.Helper()
	b, err := srv.Connect(ctx, natsbus.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
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
