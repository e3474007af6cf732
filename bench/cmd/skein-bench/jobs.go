package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bench/fanout"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/wire"
)

// runJobs measures many jobs at once on one coordinator: the aggregate
// rate of -jobs concurrent map jobs of -tasks no-op tasks against the
// rate of one such job alone, and the slowest job's wall time against the
// median's. It also prints the processor time per 1,000 tasks of the
// concurrent jobs: Skein's coordinator and runtime processes, this
// process (the 50 clients), and the broker's when its process id is given
// (SKEIN_BENCH_NATS_PID, SKEIN_BENCH_AMQP_PID).
func runJobs(args []string) error {
	fs := flag.NewFlagSet("jobs", flag.ExitOnError)
	busList := fs.String("buses", "nats,amqp", "nats (SKEIN_BENCH_NATS_URL or SKEIN_TEST_NATS_URL), amqp (SKEIN_BENCH_AMQP_URL or SKEIN_TEST_AMQP_URL)")
	jobs := fs.Int("jobs", 50, "concurrent jobs")
	tasks := fs.Int("tasks", 1000, "no-op tasks per job")
	runs := fs.Int("runs", 3, "single-job runs (the median is reported)")
	_ = fs.Parse(args)
	bin, cleanup, err := buildPrograms()
	if err != nil {
		return err
	}
	defer cleanup()
	ctx := context.Background()
	iter := wire.Value("[" + strings.TrimSuffix(strings.Repeat("null,", *tasks), ",") + "]")
	spec := func() *wire.JobSpec { return &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: iter} }
	fmt.Printf("bus\tsingle job tasks/s\t%d jobs aggregate tasks/s\taggregate/single\tjob wall p50\tslowest\tslowest/p50\tcpu/1k skein\tcpu/1k clients\tcpu/1k broker\n", *jobs)
	for _, name := range strings.Split(*busList, ",") {
		var url string
		var brokerPID int
		switch strings.TrimSpace(name) {
		case "nats":
			url = envOr("SKEIN_BENCH_NATS_URL", "SKEIN_TEST_NATS_URL")
			brokerPID = envPID("SKEIN_BENCH_NATS_PID")
		case "amqp":
			url = envOr("SKEIN_BENCH_AMQP_URL", "SKEIN_TEST_AMQP_URL")
			brokerPID = envPID("SKEIN_BENCH_AMQP_PID")
		default:
			return fmt.Errorf("unknown bus %q", name)
		}
		if url == "" {
			return fmt.Errorf("-buses %s: no broker URL in the environment", name)
		}
		svc, err := fanout.StartServices(bin, url, 1, goruntime.NumCPU(), 0)
		if err != nil {
			return err
		}
		b, err := dial.Open(ctx, url, dial.Options{})
		if err != nil {
			svc.Stop()
			return err
		}
		c := client.New(b)
		run := func() (time.Duration, error) {
			start := time.Now()
			_, st, err := c.Run(ctx, spec())
			if err == nil && st.State != wire.StateDone {
				err = fmt.Errorf("job ended %s", st.State)
			}
			return time.Since(start), err
		}
		var singles []time.Duration
		for range *runs {
			d, err := run()
			if err != nil {
				b.Close()
				svc.Stop()
				return fmt.Errorf("%s single job: %w", name, err)
			}
			singles = append(singles, d)
		}
		walls := make([]time.Duration, *jobs)
		errs := make([]error, *jobs)
		var wg sync.WaitGroup
		skeinCPU, selfCPU, brokerCPU := svc.CPU(), fanout.SelfCPU(), procCPU(brokerPID)
		start := time.Now()
		for i := range *jobs {
			wg.Add(1)
			go func() { defer wg.Done(); walls[i], errs[i] = run() }()
		}
		wg.Wait()
		total := time.Since(start)
		skeinCPU, selfCPU, brokerCPU = svc.CPU()-skeinCPU, fanout.SelfCPU()-selfCPU, procCPU(brokerPID)-brokerCPU
		b.Close()
		svc.Stop()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("%s concurrent jobs: %w\ncoordinator log:\n%s", name, err, svc.Log())
			}
		}
		single := float64(*tasks) / stats.Percentile(singles, 50).Seconds()
		agg := float64(*jobs**tasks) / total.Seconds()
		p50, slowest := stats.Percentile(walls, 50), slices.Max(walls)
		perK := func(d time.Duration) string {
			return (d / time.Duration(*jobs**tasks/1000)).Round(time.Millisecond).String()
		}
		broker := "-"
		if brokerPID > 0 {
			broker = perK(brokerCPU)
		}
		fmt.Printf("%s\t%.0f\t%.0f\t%.2f\t%v\t%v\t%.2f\t%s\t%s\t%s\n", name, single, agg, agg/single, p50.Round(time.Millisecond), slowest.Round(time.Millisecond), slowest.Seconds()/p50.Seconds(),
			perK(skeinCPU), perK(selfCPU), broker)
	}
	fmt.Fprintf(os.Stderr, "one coordinator and one runtime process (%d slots, default prefetch); jobs submitted and awaited in-process with pkg/client\n", goruntime.NumCPU())
	return nil
}

// procCPU is pid's processor time so far, 0 when pid is 0 or unreadable.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	d, _ := fanout.ProcCPU(pid)
	return d
}
