package trigger

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
)

// TestCallAroundAStuckCoordinator: a trigger request that lands on a
// coordinator that is stopped (it took the request and never answers)
// is answered by a live one. It went to the bus once and waited for ever
// (`submit trigger list` hung, with one of two coordinators stopped, once
// in two).
func TestCallAroundAStuckCoordinator(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unstick := make(chan struct{})
	defer close(unstick)
	stuck := natstest.Connect(t, srv, natsbus.Options{Name: "stuck"})
	if err := stuck.Serve(ctx, APISubject, func(ctx context.Context, m bus.Message) ([]byte, error) {
		<-unstick
		return nil, context.Canceled
	}); err != nil {
		t.Fatal(err)
	}
	live := natstest.Connect(t, srv, natsbus.Options{Name: "live"})
	if err := live.Serve(ctx, APISubject, func(ctx context.Context, m bus.Message) ([]byte, error) {
		return json.Marshal(Response{Triggers: []Def{{Name: "live"}}})
	}); err != nil {
		t.Fatal(err)
	}
	b := natstest.Connect(t, srv, natsbus.Options{Name: "submit"})
	for i := range 10 {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		resp, err := Call(rctx, b, Request{Op: "list"})
		rcancel()
		if err != nil || len(resp.Triggers) != 1 || resp.Triggers[0].Name != "live" {
			t.Fatalf("list %d, with one of two coordinators stuck: %+v, %v", i, resp, err)
		}
	}
}
