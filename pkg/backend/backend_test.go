package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestJobValidate(t *testing.T) {
	if err := (Job{ID: "j1", Pool: "default", Tasks: 3}).Validate(); err != nil {
		t.Fatalf("valid job: %v", err)
	}
	err := (Job{Tasks: 0, PoolThreads: -1, MemoryMB: -2, TimeoutMS: -3}).Validate()
	if err == nil {
		t.Fatal("invalid job accepted")
	}
	for _, field := range []string{"ID", "Pool", "Tasks", "PoolThreads", "MemoryMB", "TimeoutMS"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestWorkers(t *testing.T) {
	var b Backend = NewWorkers()
	ctx := context.Background()
	if err := b.Dispatch(ctx, Job{ID: "j", Pool: "p", Tasks: 10}); err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	if err := b.Dispatch(ctx, Job{ID: "j", Tasks: 10}); err == nil {
		t.Fatal("dispatch of a job without a pool succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Dispatch(cctx, Job{ID: "j", Pool: "p", Tasks: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("dispatch with cancelled ctx: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := b.Dispatch(ctx, Job{ID: "j", Pool: "p", Tasks: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("dispatch after close: %v", err)
	}
}
