package natsbus_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
)

// TestStats: QueueDepth counts a queue's messages (in the bus'
// namespace, whatever their job keys), a queue never used holds none;
// Reconnects counts a reconnection after the server restarts on its
// port, and Connected follows the connection.
func TestStats(t *testing.T) {
	cfg := natsbus.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"}
	e, err := natsbus.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.Shutdown() }()
	u, err := url.Parse(e.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = u.Host
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := natsbus.Connect(ctx, e.ClientURL(), natsbus.Options{Prefix: "stats"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	other, err := natsbus.Connect(ctx, e.ClientURL(), natsbus.Options{Prefix: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := b.Enqueue(ctx, "q1", bus.Message{Key: "j1", Data: []byte("a")}, bus.Message{Key: "j2", Data: []byte("b")}, bus.Message{Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if err := other.Enqueue(ctx, "q1", bus.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int{"q1": 3, "q2": 0} {
		if n, err := b.QueueDepth(ctx, q); err != nil || n != want {
			t.Errorf("QueueDepth(%s) = %d, %v; want %d", q, n, err, want)
		}
	}
	if _, err := b.QueueDepth(ctx, "a.b"); err == nil {
		t.Error("QueueDepth of a bad queue name: no error")
	}
	if !b.Connected() || b.Reconnects() != 0 {
		t.Fatalf("fresh bus: Connected %v, Reconnects %d", b.Connected(), b.Reconnects())
	}

	e.Shutdown()
	for b.Connected() {
		if ctx.Err() != nil {
			t.Fatal("still connected after the server stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e, err = natsbus.StartEmbedded(cfg); err != nil {
		t.Fatal(err)
	}
	for !b.Connected() {
		if ctx.Err() != nil {
			t.Fatal("not connected again after the server restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.Reconnects(); n != 1 {
		t.Errorf("Reconnects = %d after one restart, want 1", n)
	}
	if n, err := b.QueueDepth(ctx, "q1"); err != nil || n != 3 {
		t.Errorf("after the restart QueueDepth(q1) = %d, %v; want 3 (file storage)", n, err)
	}
}
