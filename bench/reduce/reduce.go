// Package reduce measures reduce latency: the time from the last map's
// completion (its function end) to the reduce result, streaming against
// barrier, with a fold reducer and with a list reducer, in one embedded
// installation.
package reduce

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// Reducers are the two shapes measured: "sum" is the built-in fold;
// "listsum" receives the whole list (as a Python reducer would).
var Reducers = []string{"sum", "listsum"}

// Start brings up an embedded installation whose runtime also knows
// listsum.
func Start(ctx context.Context, workers int) (*embedded.Cluster, error) {
	reg := fn.Builtins()
	reg.Register(fn.Spec{Name: "listsum", Params: []string{"values"}, Doc: "sum of a list (a list reducer)",
		Run: func(ctx context.Context, a *fn.Args) (any, error) {
			var xs []int64
			if err := a.Get("values", &xs); err != nil {
				return nil, err
			}
			var s int64
			for _, x := range xs {
				s += x
			}
			return s, nil
		}})
	cfg := embedded.Config{Workers: workers}
	cfg.Runtime.Registry = reg
	return embedded.Start(ctx, cfg)
}

// Run measures one mapreduce of n echo maps and returns the reduce
// latency and the whole job's wall time.
func Run(ctx context.Context, c *embedded.Cluster, n int, mode wire.ReduceMode, reducer string) (lat, wall time.Duration, err error) {
	xs := make([]int, n)
	want := 0
	for i := range xs {
		xs[i] = i
		want += i
	}
	iter, _ := json.Marshal(xs)
	start := time.Now()
	res, st, err := c.Client.Run(ctx, &wire.JobSpec{Kind: wire.JobMapReduce, Function: "echo", Iterdata: iter, ReduceFunction: reducer, ReduceMode: mode})
	if err != nil {
		return 0, 0, err
	}
	wall = time.Since(start)
	if string(res) != fmt.Sprint(want) {
		return 0, 0, fmt.Errorf("%s %s n=%d: result %s, want %d", mode, reducer, n, res, want)
	}
	evs, _, err := c.Client.Events(ctx, st.ID)
	if err != nil {
		return 0, 0, err
	}
	var lastMap, reduced int64
	for _, ev := range evs {
		switch {
		case ev.Kind == wire.TaskMap && ev.Type == wire.EventDone && ev.Finished > lastMap:
			lastMap = ev.Finished
		case ev.Kind == wire.TaskReduce && ev.Type == wire.EventDone:
			reduced = ev.Finished
		}
	}
	if lastMap == 0 || reduced == 0 {
		return 0, 0, fmt.Errorf("events incomplete: last map %d, reduce %d", lastMap, reduced)
	}
	return time.Duration(reduced - lastMap), wall, nil
}

// Median of durations.
func Median(ds []time.Duration) time.Duration {
	return stats.Percentile(ds, 50)
}
