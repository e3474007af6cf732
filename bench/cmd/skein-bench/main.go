// Command skein-bench runs Skein's benchmarks and prints tables of
// medians. See docs/benchmarks.md.
//
//	skein-bench fanout [-n 1,100,1000,10000,100000] [-runs 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinrun/skein/bench/fanout"
	"github.com/skeinrun/skein/bench/reduce"
	"github.com/skeinrun/skein/pkg/wire"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: skein-bench fanout|reduce [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fanout":
		err = runFanout(os.Args[2:])
	case "reduce":
		err = runReduce(os.Args[2:])
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "skein-bench:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad number %q", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// buildSubmit builds the submit program once for the run.
func buildSubmit() (string, func(), error) {
	dir, err := os.MkdirTemp("", "skein-bench-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/skeinrun/skein/cmd/submit")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building submit: %w", err)
	}
	return filepath.Join(dir, "submit"), func() { os.RemoveAll(dir) }, nil
}

func runFanout(args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ExitOnError)
	ns := fs.String("n", "1,100,1000,10000,100000", "task counts")
	runs := fs.Int("runs", 3, "runs per point (the median is reported)")
	iso := fs.Int("isolated", 200, "one-task jobs for the isolated completion latency")
	_ = fs.Parse(args)
	counts, err := ints(*ns)
	if err != nil {
		return err
	}
	bin, cleanup, err := buildSubmit()
	if err != nil {
		return err
	}
	defer cleanup()
	ctx := context.Background()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "N\tskein wall\tskein tasks/s\tlat p50\tlat p99\tpeak RSS\tfloor wall\tfloor tasks/s\tfloor lat p50\tskein/floor\t\n")
	for _, n := range counts {
		var sk, fl []fanout.Result
		for r := 0; r < *runs; r++ {
			// Side by side: one Skein run, then one floor run.
			s, err := fanout.Submit(ctx, bin, n)
			if err != nil {
				return err
			}
			sk = append(sk, s)
			if n > 0 {
				f, err := fanout.Floor(ctx, n, 64)
				if err != nil {
					return err
				}
				fl = append(fl, f)
			}
		}
		s, f := fanout.Median(sk), fanout.Median(fl)
		fmt.Fprintf(w, "%d\t%v\t%.0f\t%v\t%v\t%.0f MB\t%v\t%.0f\t%v\t%.2f\t\n", n, s.Wall.Round(time.Millisecond), s.TasksPerSec(),
			s.LatP50, s.LatP99, float64(s.PeakRSS)/1e6, f.Wall.Round(time.Millisecond), f.TasksPerSec(), f.LatP50.Round(time.Microsecond), s.TasksPerSec()/f.TasksPerSec())
		w.Flush()
	}
	p50, p99, err := fanout.Isolated(ctx, *iso)
	if err != nil {
		return err
	}
	fmt.Printf("\nisolated task (one-task jobs, in-process, %d runs): completion latency p50 %v, p99 %v\n", *iso, p50, p99)
	fmt.Printf("skein: `submit map --function noop --iterdata-from FILE --quiet` as a new process (start included), embedded default; floor: bare JetStream loop in-process, prefetch 64\n")
	return nil
}

func runReduce(args []string) error {
	fs := flag.NewFlagSet("reduce", flag.ExitOnError)
	ns := fs.String("n", "100,1000,10000", "map counts")
	runs := fs.Int("runs", 5, "runs per point (the median is reported)")
	workers := fs.Int("workers", 2, "worker slots")
	_ = fs.Parse(args)
	counts, err := ints(*ns)
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, err := reduce.Start(ctx, *workers)
	if err != nil {
		return err
	}
	defer c.Close()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "maps\treducer\tstreaming p50\tbarrier p50\tbarrier/streaming\tstreaming job\tbarrier job\t\n")
	for _, n := range counts {
		for _, red := range reduce.Reducers {
			var sl, bl, sw, bw []time.Duration
			for r := 0; r < *runs; r++ {
				// Side by side, alternating.
				l, wall, err := reduce.Run(ctx, c, n, wire.ReduceStreaming, red)
				if err != nil {
					return err
				}
				sl, sw = append(sl, l), append(sw, wall)
				l, wall, err = reduce.Run(ctx, c, n, wire.ReduceBarrier, red)
				if err != nil {
					return err
				}
				bl, bw = append(bl, l), append(bw, wall)
			}
			s, b := reduce.Median(sl), reduce.Median(bl)
			fmt.Fprintf(w, "%d\t%s\t%v\t%v\t%.1fx\t%v\t%v\t\n", n, red, s.Round(10*time.Microsecond), b.Round(10*time.Microsecond),
				float64(b)/float64(s), reduce.Median(sw).Round(time.Millisecond), reduce.Median(bw).Round(time.Millisecond))
			w.Flush()
		}
	}
	fmt.Println("\nreduce latency = reduce result (reducer's function end) - last map's function end; maps: echo of an int; embedded, in-process")
	return nil
}
