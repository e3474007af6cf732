package trigger

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// crashCoordinator is a job log shared by two runners: SubmitOnce
// records a spec (the first of an id wins); while dying is set it then
// never returns, as a coordinator killed right after it recorded the job
// and before the events were acknowledged.
type crashCoordinator struct {
	mu    sync.Mutex
	dying bool
	calls int
	specs map[string]*wire.JobSpec
}

func (c *crashCoordinator) SubmitOnce(ctx context.Context, spec *wire.JobSpec) (string, error) {
	c.mu.Lock()
	c.calls++
	_, seen := c.specs[spec.ID]
	if !seen {
		c.specs[spec.ID] = spec
	}
	dying := c.dying
	c.mu.Unlock()
	if dying {
		<-ctx.Done()
		return "", ctx.Err()
	}
	if seen {
		return spec.ID, errExists
	}
	return spec.ID, nil
}

func (c *crashCoordinator) LeaseHeld() bool { return true }

// count returns how many recorded jobs hold each input.
func (c *crashCoordinator) count(t *testing.T) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := map[string]int{}
	for _, s := range c.specs {
		var in []json.RawMessage
		if err := json.Unmarshal(s.Iterdata, &in); err != nil {
			t.Fatal(err)
		}
		for _, v := range in {
			n[string(v)]++
		}
	}
	return n
}

// A batch (count 3) whose job was recorded by a coordinator that died
// before acknowledging its events is delivered again, after other
// events; the coordinator that gets it groups it as it was grouped, so
// each event is in one job: [0,1,2] once, [3,4,5] once, and no job
// mixes the two.
func TestBatchRegroupedAfterCrash(t *testing.T) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := srv.Connect(ctx, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cc := &crashCoordinator{specs: map[string]*wire.JobSpec{}, dying: true}
	newRunner := func() *Runner {
		r := New(Config{Bus: b, Coordinator: cc, ErrJobExists: errExists, Logger: slog.New(slog.NewTextHandler(tlogWriter{t}, nil)),
			DialNATS: func(ctx context.Context, url string) (*nats.Conn, error) { return nats.Connect(srv.ClientURL()) }})
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r1 := newRunner()
	d := Def{Name: "three", Source: Source{NATS: "skein.notify.n"}, Job: Template{Kind: wire.JobMap, Function: "noop"}, Batch: Batch{Count: 3}}
	if _, err := Call(ctx, b, Request{Op: "create", Def: &d}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := js.Stream(ctx, NotifyStream("skein")); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pub := func(i int) {
		t.Helper()
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "skein.notify.n", Data: []byte(strconv.Itoa(i)),
			Header: nats.Header{"Nats-Msg-Id": []string{"m" + strconv.Itoa(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		pub(i)
	}
	// The first runner records [0,1,2] and dies before acknowledging.
	waitCalls := func(n int) {
		t.Helper()
		for {
			cc.mu.Lock()
			c := cc.calls
			cc.mu.Unlock()
			if c >= n {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%d submissions, want %d", c, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitCalls(1)
	r1.Close() // its events go back to the source, delivered again in a second
	cc.mu.Lock()
	cc.dying = false
	cc.mu.Unlock()
	// Two new events come first to the second runner, then the three
	// again; the last new event after the second runner has submitted.
	pub(3)
	pub(4)
	r2 := newRunner()
	defer r2.Close()
	waitCalls(2)
	pub(5)
	for {
		n := cc.count(t)
		if len(n) == 6 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("inputs in jobs: %v, want 0 to 5", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for in, c := range cc.count(t) {
		if c != 1 {
			cc.mu.Lock()
			for _, s := range cc.specs {
				t.Logf("job %s: %s", s.ID, s.Iterdata)
			}
			cc.mu.Unlock()
			t.Fatalf("input %s is in %d jobs, want 1", in, c)
		}
	}
}

// The same on RabbitMQ, where a consumer takes up to its prefetch (18
// here, for batches of 9): the dying coordinator holds events 0 to 17
// and has recorded [0..8]; 18 to 21 go to the second coordinator, which
// then gets 0 to 17 again. Each event is in one job.
func TestBatchRegroupedAfterCrashAMQP(t *testing.T) {
	raw := testenv.Require(t, testenv.AMQPURL)
	ns := fmt.Sprintf("rg%d", time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, raw+"?ns="+ns, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cc := &crashCoordinator{specs: map[string]*wire.JobSpec{}, dying: true}
	newRunner := func() *Runner {
		r := New(Config{Bus: b, Coordinator: cc, ErrJobExists: errExists, Namespace: ns, Logger: slog.New(slog.NewTextHandler(tlogWriter{t}, nil)),
			DialAMQP: func(ctx context.Context, url string) (*amqp.Connection, error) { return amqp.Dial(raw) }})
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	queue := ns + ".trigger-nine"
	conn, err := amqp.Dial(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = ch.QueueDelete(queue, false, false, false) }()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	pub := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{MessageId: "m" + strconv.Itoa(i), Body: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitCalls := func(n int) {
		t.Helper()
		for {
			cc.mu.Lock()
			c := cc.calls
			cc.mu.Unlock()
			if c >= n {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%d submissions, want %d", c, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	held := func(n int) {
		t.Helper()
		for {
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if q.Messages == n {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%d messages ready, want %d", q.Messages, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	r1 := newRunner()
	d := Def{Name: "nine", Source: Source{AMQP: queue}, Job: Template{Kind: wire.JobMap, Function: "noop"}, Batch: Batch{Count: 9}}
	if _, err := Call(ctx, b, Request{Op: "create", Def: &d}); err != nil {
		t.Fatal(err)
	}
	pub(0, 18)
	waitCalls(1)
	held(0) // the first coordinator holds all 18
	r2 := newRunner()
	defer r2.Close()
	pub(18, 22)
	held(0) // the second holds 18 to 21
	cc.mu.Lock()
	cc.dying = false
	cc.mu.Unlock()
	r1.Close()
	waitCalls(2)
	pub(22, 27)
	for {
		n := cc.count(t)
		if len(n) == 27 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("inputs in jobs: %v, want 0 to 26", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for in, c := range cc.count(t) {
		if c != 1 {
			cc.mu.Lock()
			for _, s := range cc.specs {
				t.Logf("job %s: %s", s.ID, s.Iterdata)
			}
			cc.mu.Unlock()
			t.Fatalf("input %s is in %d jobs, want 1", in, c)
		}
	}
}
