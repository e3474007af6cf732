package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// TestSubscribeNewLosesNothingAcrossRestart: a subscription from "now on"
// (no From, no Since) whose server is killed and restarted before its
// first message must still deliver the messages published after it was
// made. Its consumer is made again after the restart; made from "now on"
// again, it would skip what was published in between (seen in CI as a
// cluster conformance run that read none of 300 events).
func TestSubscribeNewLosesNothingAcrossRestart(t *testing.T) {
	for name, bin := range natsServers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startNATSProcess(t, bin)
			ctx := ctxFor(t, 2*time.Minute)
			sub, pub := connect(t, srv.URL()), connect(t, srv.URL())
			events, err := sub.Subscribe(ctx, "resub.>", bus.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			srv.Kill()
			srv.Restart()
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := pub.Publish(pctx, "resub.a", bus.Message{Data: []byte("after the restart")})
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish after the restart: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			select {
			case m := <-events:
				if string(m.Data) != "after the restart" {
					t.Fatalf("got %q", m.Data)
				}
			case <-time.After(45 * time.Second):
				t.Fatal("the event published after the restart was not delivered within 45s")
			}
		})
	}
}
