package coordinator_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/wire"
)

// faultyEnqueue is a real bus whose next Enqueue calls fail, as natsbus's
// do while a cluster elects the task stream's leader (no acknowledgement,
// or no stream to answer).
type faultyEnqueue struct {
	bus.Bus
	fail atomic.Int32 // Enqueue calls left to fail
}

func (b *faultyEnqueue) Enqueue(ctx context.Context, queue string, msgs ...bus.Message) error {
	if b.fail.Add(-1) >= 0 {
		return fmt.Errorf("natsbus: enqueue on %s: %w", queue, nats.ErrTimeout)
	}
	return b.Bus.Enqueue(ctx, queue, msgs...)
}

// A task's retry that the broker refuses for a moment is published again,
// as the job's first tasks are: the job does not fail for it.
func TestRetryRepublishSurvivesBrokerHiccup(t *testing.T) {
	var fb *faultyEnqueue
	nb, c, _ := setupWrapped(t, func(b *natsbus.Bus) bus.Bus { fb = &faultyEnqueue{Bus: b}; return fb })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Pool: "manual", Function: "flaky", Data: wire.Value(`{}`), Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if task := take(t, nb, "manual", 1)[0]; task.Attempt != 1 {
		t.Fatalf("attempt %d, want 1", task.Attempt)
	}
	fb.fail.Store(2) // the retry's first two publications fail
	publishEvents(t, nb, id, wire.Event{Job: id, Task: 0, Kind: wire.TaskCall, Attempt: 1, Type: wire.EventFailed,
		Error: &wire.TaskError{Kind: wire.ErrUser, Message: "flaky", Retryable: true}})
	if task := take(t, nb, "manual", 1)[0]; task.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", task.Attempt)
	}
	publishEvents(t, nb, id, wire.Event{Job: id, Task: 0, Kind: wire.TaskCall, Attempt: 2, Type: wire.EventDone, Result: wire.Value(`7`), Finished: time.Now().UnixNano()})
	st, err := c.Wait(ctx, id)
	if err != nil || st.State != wire.StateDone || st.Retried != 1 {
		t.Fatalf("state %s, err %v, status %+v", st.State, err, st)
	}
}
