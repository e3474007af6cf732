package fanout

import (
	"context"
	"os"
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

// A small run of the embedded floor: every event read, its messages
// counted; not a measurement.
func TestFloor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Floor(ctx, 500, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 500 || r.Wall <= 0 || r.LatP50 <= 0 || r.LatP99 < r.LatP50 || r.MsgsPerTask <= 0 {
		t.Fatalf("implausible result %+v", r)
	}
	t.Logf("%d tasks in %s: %.0f tasks/s, latency p50 %s p99 %s, %.2f messages per task", r.N, r.Wall, r.TasksPerSec(), r.LatP50, r.LatP99, r.MsgsPerTask)
}

// TestProcCPU: /proc's count of this process's processor time follows
// getrusage's, after a busy loop of 200 ms of CPU.
func TestProcCPU(t *testing.T) {
	start := SelfCPU()
	for SelfCPU()-start < 200*time.Millisecond {
		for i := 0; i < 1e6; i++ {
			_ = i * i
		}
	}
	self := SelfCPU()
	proc, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self < 200*time.Millisecond || proc < self-50*time.Millisecond || proc > self+50*time.Millisecond {
		t.Fatalf("/proc says %v, getrusage %v", proc, self)
	}
}
