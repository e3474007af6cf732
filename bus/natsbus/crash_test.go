package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
)

// TestBrokerKilledMidJob enqueues a job's tasks, consumes and acks them
// under load with three consumers, SIGKILLs the nats-server in the middle
// and starts it again on the same file store. Every task is consumed;
// what the crash leaves on the task stream is reported (messages whose
// ack the consumer kept but whose removal from the stream was lost: below
// the consumer's ack floor, never delivered again) and the job's Purge,
// which the coordinator calls at the end of every job, must leave nothing
// of the job on the queue.
func TestBrokerKilledMidJob(t *testing.T) {
	count := 2000
	if testing.Short() {
		count = 600
	}
	for name, bin := range natsServers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			brokerKilledMidJob(t, bin, count)
		})
	}
}

func brokerKilledMidJob(t *testing.T, bin string, count int) {
	srv := startNATSProcess(t, bin)
	ctx := ctxFor(t, 3*time.Minute)
	const q, key, lease, work = "crash", "job1", 3 * time.Second, 10 * time.Millisecond
	prod := connect(t, srv.URL())
	msgs := make([]bus.Message, count)
	for i := range msgs {
		msgs[i] = bus.Message{Key: key, Data: []byte(strconv.Itoa(i))}
	}
	if err := prod.Enqueue(ctx, q, msgs...); err != nil {
		t.Fatal(err)
	}

	var (
		mu         sync.Mutex
		acked      = map[string]int{} // data -> acks that returned nil
		seen       = map[string]int{} // data -> deliveries
		firstAgain int                // deliveries of a message seen before with Attempt() == 1
		ackCount   atomic.Int64
		all        = make(chan struct{})
		allOnce    sync.Once
	)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 3 {
		b := connect(t, srv.URL())
		ds, err := b.Consume(cctx, q, bus.QueueOptions{Prefetch: 16, Lease: lease})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range ds {
				data := string(d.Message().Data)
				time.Sleep(work) // the task's work
				mu.Lock()
				if seen[data] > 0 && d.Attempt() == 1 {
					firstAgain++
				}
				seen[data]++
				mu.Unlock()
				actx, acancel := context.WithTimeout(cctx, 2*time.Second)
				err := d.Ack(actx)
				acancel()
				if err != nil {
					continue // redelivered after its lease
				}
				ackCount.Add(1)
				mu.Lock()
				acked[data]++
				if len(acked) == count {
					allOnce.Do(func() { close(all) })
				}
				mu.Unlock()
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	// Kill the broker once half the tasks are acked.
	waitFor(t, 60*time.Second, "3/4 of the tasks acked", func() bool { return ackCount.Load() >= int64(count*3/4) })
	srv.Kill()
	killedAt := ackCount.Load()
	srv.Restart()
	t.Logf("%s: killed after %d acks", srv.Version(t), killedAt)

	// Every task is acked, or was delivered and its ack took effect on the
	// server while the reply was lost in the crash: the ack returned an
	// error, and the message is gone from the work-queue stream (only an
	// ack removes it) with nothing pending. The task ran and is settled;
	// a runtime logs the failed settle, and its result event went out
	// before it.
	ins := inspector(t, prod)
	deadline := time.Now().Add(90 * time.Second)
	for done := false; !done; {
		select {
		case <-all:
			done = true
			continue
		case <-time.After(time.Second):
		}
		mu.Lock()
		missing := map[string]int{}
		for i := range count {
			if d := strconv.Itoa(i); acked[d] == 0 {
				missing[d] = seen[d]
			}
		}
		mu.Unlock()
		ci, err := ins.consumer(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		settled := ci.NumPending == 0 && ci.NumAckPending == 0
		if !settled && time.Now().Before(deadline) {
			continue
		}
		onStream := ins.leftData(ctx, t, q, key)
		settledUnseen := settled
		for d, n := range missing {
			settledUnseen = settledUnseen && n > 0 && !onStream[d]
		}
		if settledUnseen {
			t.Logf("%s: %d tasks whose acks took effect while their replies were lost in the crash: %v", srv.Version(t), len(missing), missing)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks acked after the restart; not acked (data: deliveries): %v; on the stream: %v; consumer: ack floor %d, %d pending, %d ack pending, %d redelivered",
				count-len(missing), count, missing, onStream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
		}
	}
	// Let what was delivered and not acked at the crash come back, and
	// anything resurrected be delivered if it ever is.
	waitFor(t, 30*time.Second, "the consumer settled", func() bool {
		ci, err := ins.consumer(ctx, q)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	ci, _ := ins.consumer(ctx, q)
	left := ins.left(ctx, t, q, key)
	mu.Lock()
	again := 0
	for _, n := range seen {
		again += n - 1
	}
	t.Logf("%s: %d deliveries of a message seen before had Attempt() == 1", srv.Version(t), firstAgain)
	mu.Unlock()
	var below, above int
	for _, seq := range left {
		if seq <= ci.AckFloor.Stream {
			below++
		} else {
			above++
		}
	}
	t.Logf("%s: after the crash: %d deliveries beyond the first; %d messages of the finished job left on the stream (%d below the consumer's ack floor %d, %d above); consumer: %d pending, %d ack pending, %d redelivered",
		srv.Version(t), again, len(left), below, ci.AckFloor.Stream, above, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)

	if len(left) > 0 {
		// Leftovers are never delivered again: an observation window
		// of two leases, not a synchronisation.
		n := func() (n int) {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range seen {
				n += c
			}
			return n
		}
		before := n()
		time.Sleep(2 * lease)
		t.Logf("%s: leftovers delivered within two leases: %d", srv.Version(t), n()-before)
	}

	if err := prod.(bus.Purger).Purge(ctx, q, key); err != nil {
		t.Fatal(err)
	}
	if left := ins.left(ctx, t, q, key); len(left) != 0 {
		t.Errorf("after the job's Purge, %d of its messages are still on the task stream: %v", len(left), left)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type jsInspector struct {
	js     jetstream.JetStream
	stream string
}

func inspector(t *testing.T, b bus.Bus) jsInspector {
	js, err := jetstream.New(b.(*natsbus.Bus).Conn())
	if err != nil {
		t.Fatal(err)
	}
	return jsInspector{js: js, stream: "SKEIN_TASKS"}
}

func (i jsInspector) consumer(ctx context.Context, q string) (*jetstream.ConsumerInfo, error) {
	c, err := i.js.Consumer(ctx, i.stream, "q-"+q)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// leftData is the data of key's messages still on the task stream.
func (i jsInspector) leftData(ctx context.Context, t *testing.T, q, key string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, data := range i.scan(ctx, t, q, key) {
		out[data] = true
	}
	return out
}

// left lists the sequences of key's messages still on the task stream.
func (i jsInspector) left(ctx context.Context, t *testing.T, q, key string) []uint64 {
	t.Helper()
	var seqs []uint64
	for seq := range i.scan(ctx, t, q, key) {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs
}

// scan reads the task stream: the data of key's messages still on it, by
// sequence.
func (i jsInspector) scan(ctx context.Context, t *testing.T, q, key string) map[uint64]string {
	t.Helper()
	s, err := i.js.Stream(ctx, i.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subj := fmt.Sprintf("skein.task.%s.%s", q, key)
	out := map[uint64]string{}
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == subj {
			out[seq] = string(m.Data)
		}
	}
	return out
}
