package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// hidingBus is a coordinator's bus whose job log subscriptions, as a
// RabbitMQ stream's, do not follow the log made again: each stops
// delivering at the first record not beyond one it delivered. The next
// refuse subscriptions of the job log from its start fail.
type hidingBus struct {
	bus.Bus
	refuse  atomic.Int32 // subscriptions from the start still to refuse
	fromOne atomic.Int32 // subscriptions from the start asked for
}

// StoreLost passes the bus's word on: the coordinator then writes a mark
// on the job log, below the position it had read.
func (b *hidingBus) StoreLost() <-chan struct{} { return b.Bus.(bus.StoreWatcher).StoreLost() }

func (b *hidingBus) Subscribe(ctx context.Context, subject string, opts bus.SubscribeOptions) (<-chan bus.Message, error) {
	if subject != "job.>" {
		return b.Bus.Subscribe(ctx, subject, opts)
	}
	if opts.From == 1 {
		b.fromOne.Add(1)
		if b.refuse.Add(-1) >= 0 {
			return nil, errors.New("subscription refused (test)")
		}
	}
	in, err := b.Bus.Subscribe(ctx, subject, opts)
	if err != nil {
		return nil, err
	}
	out := make(chan bus.Message)
	go func() {
		defer close(out)
		var last uint64
		hidden := false
		for m := range in {
			if hidden || m.Seq <= last {
				hidden = true
				continue
			}
			last = m.Seq
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// A coordinator whose job log subscription does not find the log made
// again (the broker came back without its store) reads the log again from
// its start; a subscription that fails is tried again every 2 s until one
// succeeds, and jobs run after it.
//
// The loss is found from the mark the coordinator writes when its bus
// reports it (StoreLost), at a position below the one it had read: the
// jobs before the loss put the old log well ahead of what the new one gets
// before that mark, and no job is submitted until the log was read again.
//
// The streams are in memory: a file-stored task stream deleted and made
// again at once sometimes acknowledges no publication (nats-server; see
// bus/natsbus TestTaskStreamDeletedUnderConsume), which failed CI here.
func TestRefollowTriesAgain(t *testing.T) {
	srv := natstest.Server(t)
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator", Logger: busLogger(t), MemoryStorage: true})
	hb := &hidingBus{Bus: b}
	startRuntime(t, natstest.Connect(t, srv, natsbus.Options{Name: "runtime", Logger: busLogger(t), MemoryStorage: true}), 2)
	c, _ := startCoordinator(t, hb, coordinator.Config{Logger: log}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(what string) {
		t.Helper()
		var id string
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			// A publication may fail while the bus makes its streams
			// again: a client tries again.
			if id, err = c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value(indexList(20))}); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: submit: %v\n%s", what, err, logs.String())
		}
		st, err := c.Wait(ctx, id)
		if err != nil || st.State != wire.StateDone || st.Done != 20 {
			t.Fatalf("%s: %+v, %v\n%s", what, st, err, logs.String())
		}
	}
	for i := range 4 {
		run(fmt.Sprintf("job %d before the loss", i))
	}
	hb.refuse.Store(2)
	dropNATSStreams(t, b, "skein")
	// The coordinator hears of the loss (StoreLost) and writes a mark below
	// the position it had read, which its subscription never brings: it
	// subscribes from the log's start, twice refused, then reads it.
	waitFor(t, 45*time.Second, "the job log read again from its start", func() bool {
		return strings.Contains(logs.String(), "reading it from its start")
	})
	if n := hb.fromOne.Load(); n != 3 {
		t.Errorf("%d subscriptions of the job log from its start, want 3 (two refused)", n)
	}
	if n := strings.Count(logs.String(), "reading the job log, made again, from its start"); n != 2 {
		t.Errorf("%d refused subscriptions logged, want 2:\n%s", n, logs.String())
	}
	run("a job after the log was read again")
}
