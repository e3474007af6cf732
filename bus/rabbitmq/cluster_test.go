package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// TestClusterServeAcrossNodeLoss: a server's node dies and comes back;
// its requests must be answered all along but for the moment it takes to
// move to another node, and after the node is back (the coordinator's API
// on a RabbitMQ cluster).
func TestClusterServeAcrossNodeLoss(t *testing.T) {
	c := testenv.AMQPClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("serve%d", time.Now().UnixNano()%1e9)
	opts := rabbitmq.Options{Prefix: prefix, DialTimeout: 2 * time.Second}
	server, _ := connect(t, c.List(), opts)
	client, _ := connect(t, c.List(), opts)
	// Several subjects, as the coordinator serves.
	subjects := []string{"api.submit", "api.status", "api.result", "api.cancel", "api.wait"}
	for _, s := range subjects {
		if err := server.Serve(ctx, s, func(ctx context.Context, m bus.Message) ([]byte, error) { return m.Data, nil }); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(what string, within time.Duration) {
		t.Helper()
		for _, s := range subjects {
			deadline := time.Now().Add(within)
			for n := 0; ; n++ {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				out, err := client.Request(rctx, s, []byte(strconv.Itoa(n)))
				rcancel()
				if err == nil && string(out) == strconv.Itoa(n) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s: no answer within %s: %v (%q)", what, s, within, err, out)
				}
				if err != nil && !errors.Is(err, bus.ErrNoResponders) {
					t.Logf("%s: %s: %v", what, s, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	ask("before", 10*time.Second)
	for round := 1; round <= 3; round++ {
		node := 0
		for i, u := range c.URLs {
			if rabbitmq.Redact(u) == server.ConnectedURL() {
				node = i + 1
			}
		}
		if node == 0 {
			t.Fatalf("the server is on %s, not a node of %v", server.ConnectedURL(), c.URLs)
		}
		t.Logf("round %d: the server is on node %d: killing it", round, node)
		c.KillNode(t, node)
		ask(fmt.Sprintf("round %d, node %d down", round, node), 20*time.Second)
		c.StartNode(t, node)
		t.Logf("round %d: node %d is back", round, node)
		ask(fmt.Sprintf("round %d, node %d back", round, node), 10*time.Second)
	}
}
