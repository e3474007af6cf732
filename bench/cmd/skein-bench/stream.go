package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinrun/skein/bench/fanout"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/wire"
)

// runStream measures how long a task's result takes from the end of its
// function to a results stream (client.Results, what `submit --stream`
// prints from), embedded and on a NATS server.
func runStream(args []string) error {
	fs := flag.NewFlagSet("stream", flag.ExitOnError)
	ns := fs.String("n", "1000,10000", "task counts")
	busList := fs.String("buses", "embedded,nats", "embedded, nats (SKEIN_BENCH_NATS_URL or SKEIN_TEST_NATS_URL)")
	_ = fs.Parse(args)
	counts, err := ints(*ns)
	if err != nil {
		return err
	}
	ctx := context.Background()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "bus\tN\tjob wall\tfirst result after submit\tend to stream p50\tp99\tmax\t\n")
	for _, b := range strings.Split(*busList, ",") {
		var c *client.Client
		var stop func()
		switch strings.TrimSpace(b) {
		case "embedded":
			cl, err := embedded.Start(ctx, embedded.Config{Workers: 2})
			if err != nil {
				return err
			}
			c, stop = cl.Client, cl.Close
		case "nats":
			u := envOr("SKEIN_BENCH_NATS_URL", "SKEIN_TEST_NATS_URL")
			if u == "" {
				return fmt.Errorf("-buses nats needs SKEIN_BENCH_NATS_URL")
			}
			bin, cleanup, err := buildPrograms()
			if err != nil {
				return err
			}
			svc, err := fanout.StartServices(bin, u, 1, 2, 0)
			if err != nil {
				cleanup()
				return err
			}
			bb, err := dial.Open(ctx, u, dial.Options{Name: "skein-bench"})
			if err != nil {
				svc.Stop()
				cleanup()
				return err
			}
			c, stop = client.New(bb), func() { bb.Close(); svc.Stop(); cleanup() }
		default:
			return fmt.Errorf("unknown bus %q", b)
		}
		for _, n := range counts {
			iter := make([]string, n)
			for i := range iter {
				iter[i] = "null"
			}
			start := time.Now()
			id, err := c.Submit(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: wire.Value("[" + strings.Join(iter, ",") + "]")})
			if err != nil {
				stop()
				return err
			}
			rs, err := c.Results(ctx, id)
			if err != nil {
				stop()
				return err
			}
			var lats []time.Duration
			var first time.Duration
			for r := range rs.C {
				now := time.Now()
				if first == 0 {
					first = now.Sub(start)
				}
				if r.Finished > 0 {
					lats = append(lats, now.Sub(time.Unix(0, r.Finished)))
				}
			}
			st, err := rs.Status()
			if err != nil || st.State != wire.StateDone || len(lats) != n {
				stop()
				return fmt.Errorf("%s n=%d: %d results, state %s, %v", b, n, len(lats), st.State, err)
			}
			wall := time.Since(start)
			fmt.Fprintf(w, "%s\t%d\t%v\t%v\t%v\t%v\t%v\t\n", b, n, wall.Round(time.Millisecond), first.Round(time.Microsecond),
				stats.Percentile(lats, 50).Round(time.Microsecond), stats.Percentile(lats, 99).Round(time.Microsecond), stats.Percentile(lats, 100).Round(time.Microsecond))
			w.Flush()
		}
		stop()
	}
	fmt.Println("end to stream: a task's function end (its runtime's clock) to its result read from client.Results, the stream `submit --stream` prints (a JSON line and a flush more). One runtime of 2 slots; on NATS one coordinator and one runtime process.")
	return nil
}
