package coordinator

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// A coordinator whose claim of a job won its term, and which another
// coordinator's record then superseded before it read its own back or
// before it held the job (it was paused in between: the fleet chaos
// suite saw it), logs that it dropped the job and never acts on it.
func TestClaimLostBeforeTakeUp(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var bLog testenv.Buffer
	a, _ := joinEmbedded(t, ctx, srv, "a", Config{Lease: time.Second})
	b, bb := joinEmbedded(t, ctx, srv, "b", Config{Lease: time.Second, Logger: slog.New(slog.NewTextHandler(&bLog, nil))})
	// No runtime: the job stays running.
	id, err := a.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value(`[1,2,3]`)})
	if err != nil {
		t.Fatal(err)
	}
	owner := func(coord string, term int) {
		t.Helper()
		data, err := wire.Encode(wire.KindOwner, wire.Owner{Job: id, Coordinator: coord, Term: term})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bb.PublishSeq(ctx, wire.JobOwnerSubject(id), bus.Message{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	// b wins term 2; a (alive) claims term 3 before b comes back.
	owner(b.own.id, 2)
	owner(a.own.id, 3)
	ledger := func() entry {
		b.own.mu.Lock()
		defer b.own.mu.Unlock()
		if e := b.own.ledger[id]; e != nil {
			return *e
		}
		return entry{}
	}
	for deadline := time.Now().Add(10 * time.Second); ledger().term < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("b's ledger never read term 3: %+v", ledger())
		}
		time.Sleep(10 * time.Millisecond)
	}
	e := ledger()
	if e.owner != a.own.id || e.mine != 2 {
		t.Fatalf("b's ledger: owner %s term %d mine %d, want %s, 3, 2", e.owner, e.term, e.mine, a.own.id)
	}
	dropped := `msg="job dropped" job=` + id
	// b's claim of term 2 comes back after term 3 (it was paused).
	b.claim(id, a.own.id, 1)
	if n := strings.Count(bLog.String(), dropped); n != 1 {
		t.Fatalf("after its claim came back superseded, b logged %d drops of the job, want 1:\n%s", n, bLog.String())
	}
	// b's take-up of term 2 comes after term 3 (it was paused between
	// its claim and holding the job).
	if err := b.takeUp(ctx, id, e.spec, e.published, e.queued, e.reducers, a.own.id, 2); err != nil {
		t.Fatal(err)
	}
	if j := b.held(id); j != nil {
		t.Fatalf("b holds the job after another coordinator claimed it")
	}
	out := bLog.String()
	if strings.Contains(out, `msg="job taken up" job=`+id) {
		t.Errorf("b took the job up after another coordinator claimed it:\n%s", out)
	}
	if n := strings.Count(out, dropped); n != 2 {
		t.Errorf("b logged %d drops of the job, want 2 (the claim, the take-up):\n%s", n, out)
	}
	// a, the owner of term 3, holds the job (it dropped it at term 2 and
	// takes its own job up again).
	for deadline := time.Now().Add(10 * time.Second); a.held(id) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("a, the job's owner, does not hold it")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
