// Command skein-bench runs Skein's benchmarks and prints tables of
// medians. See docs/benchmarks.md.
//
//	skein-bench fanout [-n 1,100,1000,10000,100000] [-runs 3]
//	skein-bench fleet [-bus nats,rabbitmq] [-runs 3] [-jobs 20] [-tasks 500] [-kills 20]
//	skein-bench million [-n 1000000] [-runs 3] [-buses embedded,nats,amqp]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinrun/skein/bench/fanout"
	"github.com/skeinrun/skein/bench/floor"
	"github.com/skeinrun/skein/bench/reduce"
	"github.com/skeinrun/skein/pkg/wire"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: skein-bench fanout|reduce|fleet|million|jobs|stream [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fanout":
		err = runFanout(os.Args[2:])
	case "reduce":
		err = runReduce(os.Args[2:])
	case "fleet":
		err = runFleet(os.Args[2:])
	case "million":
		err = runMillion(os.Args[2:])
	case "jobs":
		err = runJobs(os.Args[2:])
	case "stream":
		err = runStream(os.Args[2:])
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

// buildPrograms builds submit, coordinator and runtime once for the run.
func buildPrograms() (string, func(), error) {
	dir, err := os.MkdirTemp("", "skein-bench-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/skeinrun/skein/cmd/submit",
		"github.com/skeinrun/skein/cmd/coordinator", "github.com/skeinrun/skein/cmd/runtime")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building the programs: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

func envOr(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func runFanout(args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ExitOnError)
	ns := fs.String("n", "1,100,1000,10000,100000", "task counts")
	runs := fs.Int("runs", 3, "runs per point (the median is reported)")
	iso := fs.Int("isolated", 200, "one-task jobs for the isolated completion latency")
	busList := fs.String("buses", "embedded", "bus setups side by side: embedded, nats (SKEIN_BENCH_NATS_URL or SKEIN_TEST_NATS_URL), amqp (SKEIN_BENCH_AMQP_URL or SKEIN_TEST_AMQP_URL)")
	prefetch := fs.Int("prefetch", 0, "--prefetch of the runtime process on a broker (0: its default, 2×slots)")
	_ = fs.Parse(args)
	counts, err := ints(*ns)
	if err != nil {
		return err
	}
	bin, cleanup, err := buildPrograms()
	if err != nil {
		return err
	}
	defer cleanup()
	ctx := context.Background()
	type setup struct {
		name, url string
		monitor   string // NATS monitoring endpoint: messages counted by the broker
		serverPID int    // the broker's process, for its CPU time (0: unknown)
		svc       *fanout.Services
	}
	var setups []*setup
	for _, b := range strings.Split(*busList, ",") {
		switch strings.TrimSpace(b) {
		case "embedded":
			setups = append(setups, &setup{name: "embedded"})
		case "nats":
			u := envOr("SKEIN_BENCH_NATS_URL", "SKEIN_TEST_NATS_URL")
			if u == "" {
				return fmt.Errorf("-buses nats needs SKEIN_BENCH_NATS_URL")
			}
			setups = append(setups, &setup{name: "nats-server", url: u, monitor: os.Getenv("SKEIN_BENCH_NATS_MONITOR"), serverPID: envPID("SKEIN_BENCH_NATS_PID")})
		case "amqp":
			u := envOr("SKEIN_BENCH_AMQP_URL", "SKEIN_TEST_AMQP_URL")
			if u == "" {
				return fmt.Errorf("-buses amqp needs SKEIN_BENCH_AMQP_URL")
			}
			setups = append(setups, &setup{name: "rabbitmq", url: u, serverPID: envPID("SKEIN_BENCH_AMQP_PID")})
		default:
			return fmt.Errorf("unknown bus %q", b)
		}
	}
	for _, s := range setups {
		if s.url == "" {
			continue
		}
		// One runtime process with as many slots as cores, like the
		// embedded default.
		svc, err := fanout.StartServices(bin, s.url, 1, goruntime.NumCPU(), *prefetch)
		if err != nil {
			return err
		}
		defer svc.Stop()
		s.svc = svc
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "bus\tN\tskein wall\tskein job\tskein tasks/s\tlat p50\tlat p99\tsubmit peak RSS\tmsgs/task\tskein cpu/1k\tfloor tasks/s\tfloor lat p50\tfloor msgs/task\tfloor cpu/1k\tskein/floor\tfloor/skein cpu\t\n")
	for _, n := range counts {
		for _, s := range setups {
			var sk, fl []fanout.Result
			for r := 0; r < *runs; r++ {
				// Side by side: one Skein run, then one floor run, same bus.
				var extra []string
				if s.url != "" {
					extra = []string{"--bus", s.url}
				}
				count := func() uint64 {
					if s.monitor == "" {
						return 0
					}
					m, err := fanout.VarzMsgs(ctx, s.monitor)
					if err != nil {
						fmt.Fprintf(os.Stderr, "counting messages: %v\n", err)
					}
					return m
				}
				serverCPU := func() time.Duration {
					if s.serverPID == 0 {
						return 0
					}
					d, err := fanout.ProcCPU(s.serverPID)
					if err != nil {
						fmt.Fprintf(os.Stderr, "broker CPU: %v\n", err)
					}
					return d
				}
				before := count()
				var svcCPU time.Duration
				if s.svc != nil {
					svcCPU = s.svc.CPU()
				}
				srvCPU := serverCPU()
				res, err := fanout.Submit(ctx, filepath.Join(bin, "submit"), n, extra...)
				if err != nil {
					return fmt.Errorf("%s n=%d: %w", s.name, n, err)
				}
				if s.svc != nil {
					res.CPU += s.svc.CPU() - svcCPU
				}
				res.ServerCPU = serverCPU() - srvCPU
				if s.monitor != "" && n > 0 {
					res.MsgsPerTask = float64(count()-before) / float64(n)
				}
				sk = append(sk, res)
				before = count()
				if n == 0 {
					continue
				}
				var f fanout.Result
				selfCPU, srvCPU := fanout.SelfCPU(), serverCPU()
				switch s.name {
				case "embedded":
					f, err = fanout.Floor(ctx, n, 1024)
				case "nats-server":
					// The floor's consumer holds as many tasks as the
					// runtime may (its adaptive window goes up to 1024).
					fp := 1024
					if *prefetch > 0 {
						fp = *prefetch
					}
					f, err = fanout.FloorURL(ctx, s.url, n, fp)
					if err == nil && s.monitor != "" {
						f.MsgsPerTask = float64(count()-before) / float64(n)
					}
				case "rabbitmq":
					var rf floor.Result
					rf, err = floor.RabbitFloor(ctx, s.url, n)
					f = fanout.Result{N: rf.N, Wall: rf.Wall, LatP50: rf.LatP50, LatP99: rf.LatP99, MsgsPerTask: rf.MsgsPerTask}
				}
				if err != nil {
					return fmt.Errorf("%s floor n=%d: %w", s.name, n, err)
				}
				f.CPU, f.ServerCPU = fanout.SelfCPU()-selfCPU, serverCPU()-srvCPU
				fl = append(fl, f)
			}
			k, f := fanout.Median(sk), fanout.Median(fl)
			kc, fc := fanout.MedianCPU(sk), fanout.MedianCPU(fl)
			cpuRatio := "-"
			if kc > 0 && fc > 0 {
				cpuRatio = fmt.Sprintf("%.2f", fc.Seconds()/kc.Seconds())
			}
			fmt.Fprintf(w, "%s\t%d\t%v\t%v\t%.0f\t%v\t%v\t%.0f MB\t%s\t%s\t%.0f\t%v\t%s\t%s\t%.2f\t%s\t\n", s.name, n, k.Wall.Round(time.Millisecond), fanout.MedianJob(sk).Round(time.Millisecond), k.TasksPerSec(),
				k.LatP50, k.LatP99, float64(k.PeakRSS)/1e6, perTask(k.MsgsPerTask), perK(kc, n), f.TasksPerSec(), f.LatP50.Round(time.Microsecond), perTask(f.MsgsPerTask), perK(fc, n), k.TasksPerSec()/f.TasksPerSec(), cpuRatio)
			w.Flush()
		}
	}
	if *iso > 0 {
		p50, p99, err := fanout.Isolated(ctx, *iso)
		if err != nil {
			return err
		}
		fmt.Printf("\nisolated task (one-task jobs, embedded, in-process, %d runs): completion latency p50 %v, p99 %v\n", *iso, p50, p99)
	}
	fmt.Printf("skein: `submit map --function noop --iterdata-from FILE --quiet` as a new process (start included); with a broker, one coordinator and one runtime process (%d slots, prefetch %d; 0 = default) already running. skein/floor is on skein wall.\n", goruntime.NumCPU(), *prefetch)
	fmt.Printf("skein job: median of the job alone, from the coordinator's accepting it to its end by the coordinator's clock; skein wall minus it is the submit process's own share (its start, reading the input, the submission's round trip, noticing the end, fetching and printing the results).\n")
	fmt.Printf("floor: bare loop on the same bus with Skein's durability: tasks on a durable work queue, events batched as the runtime batches them (what finished tasks wait, up to 128 per event) on a durable stream, a task acked once its event is stored (NATS: JetStream, prefetch 1024 or -prefetch, embedded with the work queue in memory and the events on files as embedded Skein; RabbitMQ: amqp091 with confirms, quorum queue, stream queue, prefetch 1024).\n")
	fmt.Printf("cpu/1k: processor time per 1,000 tasks, median of the runs: Skein's processes (submit; on a broker also the coordinator and runtime) and the floor's loop, each plus the broker's own when its process is given (SKEIN_BENCH_NATS_PID, SKEIN_BENCH_AMQP_PID; embedded: inside submit and the floor). floor/skein cpu is the share of Skein's processor time the floor needs: what skein/floor would be on an idle machine where processor time is the limit.\n")
	fmt.Printf("lat: a task's function end to its event read (Skein: recorded by the coordinator). msgs/task: messages between clients and broker per task (with SKEIN_BENCH_NATS_MONITOR set, the NATS server counts them for both sides; otherwise the floors count their own clients' messages; -: not measured).\n")
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

// runMillion measures one job of n no-op tasks (a million by default):
// wall time from exec of submit to its exit with every result printed,
// and peak memory: of the whole submit process embedded, of the
// coordinator process on a broker (a new coordinator and runtime for each
// run, so that each run's peak is its own).
func runMillion(args []string) error {
	fs := flag.NewFlagSet("million", flag.ExitOnError)
	n := fs.Int("n", 1_000_000, "tasks")
	runs := fs.Int("runs", 3, "runs per bus (the median is reported)")
	busList := fs.String("buses", "embedded,nats", "embedded, nats (SKEIN_BENCH_NATS_URL or SKEIN_TEST_NATS_URL), amqp (SKEIN_BENCH_AMQP_URL or SKEIN_TEST_AMQP_URL)")
	prefetch := fs.Int("prefetch", 256, "--prefetch of the runtime process on a broker")
	_ = fs.Parse(args)
	bin, cleanup, err := buildPrograms()
	if err != nil {
		return err
	}
	defer cleanup()
	ctx := context.Background()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "bus\tN\twall\ttasks/s\tpeak RSS\tof\t\n")
	for _, b := range strings.Split(*busList, ",") {
		url := ""
		switch b = strings.TrimSpace(b); b {
		case "embedded":
		case "nats":
			url = envOr("SKEIN_BENCH_NATS_URL", "SKEIN_TEST_NATS_URL")
		case "amqp":
			url = envOr("SKEIN_BENCH_AMQP_URL", "SKEIN_TEST_AMQP_URL")
		default:
			return fmt.Errorf("unknown bus %q", b)
		}
		if b != "embedded" && url == "" {
			return fmt.Errorf("-buses %s needs SKEIN_BENCH_%s_URL", b, strings.ToUpper(b))
		}
		var res []fanout.Result
		for r := 0; r < *runs; r++ {
			if url == "" {
				k, err := fanout.Submit(ctx, filepath.Join(bin, "submit"), *n)
				if err != nil {
					return fmt.Errorf("%s: %w", b, err)
				}
				res = append(res, k)
				continue
			}
			svc, err := fanout.StartServices(bin, url, 1, goruntime.NumCPU(), *prefetch)
			if err != nil {
				return err
			}
			k, err := fanout.Submit(ctx, filepath.Join(bin, "submit"), *n, "--bus", url)
			if err == nil {
				k.PeakRSS, err = svc.CoordinatorPeakRSS()
			}
			svc.Stop()
			if err != nil {
				return fmt.Errorf("%s: %w", b, err)
			}
			res = append(res, k)
		}
		k := fanout.Median(res)
		rss := fanout.MedianRSS(res)
		of := "submit process (server, coordinator, workers, client)"
		if url != "" {
			of = "coordinator process"
		}
		fmt.Fprintf(w, "%s\t%d\t%v\t%.0f\t%.0f MB\t%s\t\n", b, *n, k.Wall.Round(10*time.Millisecond), k.TasksPerSec(), float64(rss)/1e6, of)
		w.Flush()
	}
	fmt.Printf("\n`submit map --function noop --iterdata-from FILE --quiet` as a new process, from exec to exit with all %d results printed; median of %d. On a broker: one coordinator and one runtime process (%d slots, prefetch %d) started fresh for each run.\n", *n, *runs, goruntime.NumCPU(), *prefetch)
	return nil
}

// perTask formats a messages-per-task count; "-" when not measured.
func perTask(m float64) string {
	if m == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", m)
}

// perK writes processor time per 1,000 of n tasks ("-": not measured).
func perK(d time.Duration, n int) string {
	if d <= 0 || n <= 0 {
		return "-"
	}
	return (d * 1000 / time.Duration(n)).Round(10 * time.Microsecond).String()
}

// envPID reads a process id from the environment variable name (0: unset
// or not a number, with a warning).
func envPID(name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 0 {
		fmt.Fprintf(os.Stderr, "%s=%q: not a process id; the broker's CPU is not measured\n", name, v)
		return 0
	}
	return pid
}
