package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
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
