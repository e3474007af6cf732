package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDoRetriesUntilSuccess(t *testing.T) {
	calls := 0
	var retried []int
	err := Do(context.Background(), Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, OnRetry: func(a int, err error, _ time.Duration) {
		retried = append(retried, a)
	}}, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want nil after 3", err, calls)
	}
	if len(retried) != 2 || retried[0] != 1 || retried[1] != 2 {
		t.Fatalf("OnRetry attempts = %v, want [1 2]", retried)
	}
}

func TestDoStopsAtTries(t *testing.T) {
	calls := 0
	boom := errors.New("boom")
	err := Do(context.Background(), Policy{Initial: time.Millisecond, Tries: 4}, func() error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 4 {
		t.Fatalf("Do = %v after %d calls, want boom after 4", err, calls)
	}
}

func TestDoPermanentStopsAtOnce(t *testing.T) {
	calls := 0
	boom := errors.New("boom")
	err := Do(context.Background(), Policy{Initial: time.Millisecond}, func() error { calls++; return Permanent(boom) })
	if err != boom || calls != 1 {
		t.Fatalf("Do = %#v after %d calls, want the unwrapped permanent error after 1", err, calls)
	}
}

func TestDoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	boom := errors.New("boom")
	start := time.Now()
	err := Do(ctx, Policy{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}, func() error { return boom })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, boom) {
		t.Fatalf("Do = %v, want the deadline and the last error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Do took %v after its context ended", d)
	}
}

func TestValue(t *testing.T) {
	n := 0
	v, err := Value(context.Background(), Policy{Initial: time.Millisecond}, func() (int, error) {
		n++
		if n == 1 {
			return 0, errors.New("first")
		}
		return 42, nil
	})
	if err != nil || v != 42 {
		t.Fatalf("Value = %d, %v", v, err)
	}
}
