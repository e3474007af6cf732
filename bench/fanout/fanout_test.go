package fanout

import (
	"context"
	"testing"
	"time"
)

// No one-task jobs asked for (skein-bench fanout -isolated 0): no
// latency, no panic.
func TestIsolatedNone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p50, p99, err := Isolated(ctx, 0)
	if err != nil || p50 != 0 || p99 != 0 {
		t.Fatalf("Isolated(0) = %v, %v, %v; want 0, 0, nil", p50, p99, err)
	}
}
