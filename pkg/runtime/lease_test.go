package runtime_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// slowEvents is a real bus whose first event publication takes a while,
// as one does while a broker fails over.
type slowEvents struct {
	bus.Bus
	delay time.Duration
	calls atomic.Int32
}

func (s *slowEvents) Publish(ctx context.Context, subject string, m bus.Message) error {
	if strings.HasPrefix(subject, "task.") && s.calls.Add(1) == 1 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Bus.Publish(ctx, subject, m)
}

// A task whose function has ended keeps its lease while its event is
// being published: it is not redelivered (and run again) because the
// publication took longer than the lease.
func TestLeaseHeldUntilEventIsSafe(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job := "jlease"
	events, err := b.Subscribe(ctx, wire.TaskEvents(job), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := wire.Encode(wire.KindTask, wire.Task{Job: job, Kind: wire.TaskCall, Attempt: 1, Function: "noop"})
	if err := b.Enqueue(ctx, "default", bus.Message{Data: data, Key: job}); err != nil {
		t.Fatal(err)
	}
	lease := 300 * time.Millisecond
	rt, err := runtime.New(&slowEvents{Bus: b, delay: 5 * lease}, runtime.Config{Registry: fn.Builtins(), Slots: 1, Lease: lease, StartedAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	defer func() { stop(); <-done }()
	// The delayed publication carries delivery 1; a redelivered run would
	// publish its own (delivery 2) event before it.
	for m := range events {
		evs, err := coordinator.DecodeEvents(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Type == wire.EventStarted {
				continue
			}
			if ev.Delivery != 1 {
				t.Fatalf("the task was delivered again (delivery %d) while its first event was being published", ev.Delivery)
			}
			return
		}
	}
	t.Fatal("no event")
}

// A runtime stopped before its queue opened (a refused job in
// single-process mode) says nothing about retrying to open it.
func TestStoppedRuntimeDoesNotWarnAboutItsQueue(t *testing.T) {
	b := setup(t)
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	for i := 0; i < 20; i++ {
		rt, err := runtime.New(b, runtime.Config{Registry: fn.Builtins(), Logger: log, Pool: "stopped" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _, _ = rt.Run(ctx) }()
		cancel()
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "opening the queue failed") {
		t.Fatalf("a stopped runtime warned about its queue:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
