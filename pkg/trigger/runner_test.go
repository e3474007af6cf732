package trigger

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/sign"
	"github.com/skeinrun/skein/pkg/wire"
)

type leaseOnly struct{}

func (leaseOnly) SubmitOnce(ctx context.Context, spec *wire.JobSpec) (string, error) {
	return spec.ID, nil
}
func (leaseOnly) LeaseHeld() bool { return true }

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// A trigger outlives the event stream's retention: the runner records it
// again before its record is dropped, and a runner that starts later
// still finds it.
func TestTriggerOutlivesRetention(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const retention = 2 * time.Second
	b := natstest.Connect(t, srv, natsbus.Options{EventRetention: retention, DedupWindow: retention / 4})
	log := slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
	jobs := Def{Name: "later", Source: Source{Jobs: "trigger:none"}, Job: Template{Kind: wire.JobCall, Function: "noop", Param: "x"}}
	start := func(refresh time.Duration) *Runner {
		r := New(Config{Bus: b, Coordinator: leaseOnly{}, Result: nil, RefreshAfter: refresh, Logger: log})
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := start(retention / 4)
	if _, err := Call(ctx, b, Request{Op: "create", Def: &jobs}); err != nil {
		t.Fatal(err)
	}
	// Three retentions later, a runner that starts anew reads the records
	// that are left: the refreshed one.
	time.Sleep(3 * retention) // the time that passes is what is tested
	r.Close()
	r2 := start(time.Hour)
	defer r2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(r2.List()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after %v the trigger is gone: %v", 3*retention, r2.List())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Deleted, it stays deleted.
	if _, err := Call(ctx, b, Request{Op: "delete", Name: "later"}); err != nil {
		t.Fatal(err)
	}
	for len(r2.List()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted trigger is still listed: %v", r2.List())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A runner that starts reads the trigger records to their end before it
// runs any: a trigger created and deleted since never runs, and Start
// returns knowing every trigger.
func TestStartReadsRecordsFirst(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := natstest.Connect(t, srv, natsbus.Options{})
	var logs testenv.Buffer
	r := New(Config{Bus: b, Coordinator: leaseOnly{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gone := Def{Name: "gone", Source: Source{Jobs: "*"}, Job: Template{Kind: wire.JobCall, Function: "noop", Param: "x"}}
	kept := gone
	kept.Name = "kept"
	for _, req := range []Request{{Op: "create", Def: &gone}, {Op: "create", Def: &kept}, {Op: "delete", Name: "gone"}} {
		for deadline := time.Now().Add(5 * time.Second); ; {
			// A delete needs the runner to know the trigger.
			if _, err := Call(ctx, b, req); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	r.Close()
	var logs2 testenv.Buffer
	noResult := func(context.Context, string) (json.RawMessage, error) { return nil, errors.New("no job ends here") }
	r2 := New(Config{Bus: b, Coordinator: leaseOnly{}, Result: noResult, Logger: slog.New(slog.NewTextHandler(&logs2, nil))})
	if err := r2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if l := r2.List(); len(l) != 1 || l[0].Name != "kept" {
		t.Fatalf("after Start: %+v, want kept alone", l)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs2.String(), `msg="trigger started" trigger=kept`); {
		if time.Now().After(deadline) {
			t.Fatalf("kept never started:\n%s", logs2.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(logs2.String(), `msg="trigger started" trigger=gone`) {
		t.Fatalf("the deleted trigger ran:\n%s", logs2.String())
	}
}

// fakeCoordinator records the jobs submitted; its lease is held while
// lease is set.
type fakeCoordinator struct {
	mu    sync.Mutex
	lease bool
	specs []*wire.JobSpec
	seen  map[string]bool
}

func (f *fakeCoordinator) SubmitOnce(ctx context.Context, spec *wire.JobSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen[spec.ID] {
		return spec.ID, errExists
	}
	f.seen[spec.ID] = true
	f.specs = append(f.specs, spec)
	return spec.ID, nil
}

func (f *fakeCoordinator) LeaseHeld() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.lease }

var errExists = errors.New("exists")

// A NATS source on a real server: messages are batched by count and
// the last, short batch by its window; each batch's job id is derived
// from its messages' ids; a coordinator without its lease hands the
// messages back, and they are run once it holds it again; every message
// is acknowledged in the end.
func TestNATSSourceBatches(t *testing.T) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := natstest.Connect(t, srv, natsbus.Options{})
	fc := &fakeCoordinator{seen: map[string]bool{}}
	r := New(Config{Bus: b, Coordinator: fc, ErrJobExists: errExists, Logger: slog.New(slog.NewTextHandler(tlogWriter{t}, nil)),
		DialNATS: func(ctx context.Context, url string) (*nats.Conn, error) { return nats.Connect(srv.ClientURL()) }})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := Def{Name: "batch", Source: Source{NATS: "skein.notify.n"}, Job: Template{Kind: wire.JobMap, Function: "noop"},
		Batch: Batch{Count: 3, Window: Duration(300 * time.Millisecond)}}
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
	// The notification stream exists once the trigger's source is open.
	for {
		if _, err := js.Stream(ctx, NotifyStream("skein")); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 7 {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "skein.notify.n", Data: []byte(strconv.Itoa(i)),
			Header: nats.Header{"Nats-Msg-Id": []string{"m" + strconv.Itoa(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// No lease: nothing is submitted; the messages go back and come again.
	time.Sleep(time.Second) // the time without a lease is the condition tested
	fc.mu.Lock()
	if len(fc.specs) != 0 {
		t.Fatalf("submitted without the lease: %d jobs", len(fc.specs))
	}
	fc.lease = true
	fc.mu.Unlock()
	want := map[string]string{
		d.JobID([]string{"m0", "m1", "m2"}): `[0,1,2]`,
		d.JobID([]string{"m3", "m4", "m5"}): `[3,4,5]`,
		d.JobID([]string{"m6"}):             `[6]`,
	}
	for {
		fc.mu.Lock()
		n := len(fc.specs)
		fc.mu.Unlock()
		if n >= 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d jobs submitted, want 3", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fc.mu.Lock()
	for _, s := range fc.specs {
		if w, ok := want[s.ID]; !ok {
			t.Errorf("job %s (iterdata %s): not one of the expected batches", s.ID, s.Iterdata)
		} else if string(s.Iterdata) != w {
			t.Errorf("job %s: iterdata %s, want %s", s.ID, s.Iterdata, w)
		}
	}
	fc.mu.Unlock()
	// Every message acknowledged.
	st, err := js.Stream(ctx, NotifyStream("skein"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := st.Consumer(ctx, consumerName("batch"))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("messages left unacknowledged: %+v", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the coordinators signing, a runner takes up only the trigger and
// batch records they signed: a trigger record is a job template whose
// tasks the coordinators sign, so a forged one would be a way round the
// signatures for whoever may publish on the bus.
func TestUnsignedTriggerRecordsIgnored(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := natstest.Connect(t, srv, natsbus.Options{})
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sign.NewSigner(key)
	verify := func(m bus.Message) bool { return s.Verify(m) == nil }
	forge := func(name string, body any) {
		data, _ := json.Marshal(body)
		if _, err := b.PublishSeq(ctx, TriggerSubject(name), bus.Message{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	def := func(name string) *Def {
		return &Def{Name: name, Source: Source{Jobs: "*"}, Job: Template{Kind: wire.JobCall, Function: "cmd:sh -c id", Param: "x"}}
	}
	forge("before", recordBody{Def: def("before")})
	forge(batchPrefix+"before", batchRecord{Trigger: "before", Events: []batchedEvent{{ID: "e1"}}})
	var logs testenv.Buffer
	r := New(Config{Bus: b, Coordinator: leaseOnly{}, Verify: verify, Sign: s.Sign, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := Call(ctx, b, Request{Op: "create", Def: def("kept")}); err != nil {
		t.Fatal(err)
	}
	forge("after", recordBody{Def: def("after")})
	forge("kept", recordBody{}) // a forged deletion
	if err := r.readRecords(ctx); err != nil {
		t.Fatal(err)
	}
	if l := r.List(); len(l) != 1 || l[0].Name != "kept" {
		t.Errorf("triggers %+v; want kept alone (the signed one)", l)
	}
	r.mu.Lock()
	batches := len(r.batches)
	r.mu.Unlock()
	if batches != 0 {
		t.Errorf("a forged batch record was taken up")
	}
	if n := strings.Count(logs.String(), "ignoring a trigger record the coordinators did not sign"); n != 4 {
		t.Errorf("%d forged records logged, want 4:\n%s", n, logs.String())
	}
	// The runner's own records are signed: a second runner takes kept up.
	r2 := New(Config{Bus: b, Coordinator: leaseOnly{}, Verify: verify, Sign: s.Sign, Logger: slog.New(slog.NewTextHandler(tlogWriter{t}, nil))})
	if err := r2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if l := r2.List(); len(l) != 1 || l[0].Name != "kept" {
		t.Errorf("a second runner's triggers %+v; want kept", l)
	}
}
