package trigger

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
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
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const retention = 2 * time.Second
	b, err := srv.Connect(ctx, natsbus.Options{EventRetention: retention, DedupWindow: retention / 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
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
