package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinrun/skein/internal/chaos"
	"github.com/skeinrun/skein/internal/stats"
)

// runFleet measures several coordinators on one namespace (issue 14):
//
//   - throughput: -jobs concurrent maps of -tasks no-op sleeps each,
//     through 1 and through 3 coordinators, alternated -runs times on the
//     same broker kind; medians and the ratio;
//   - takeover: three coordinators, a random one SIGKILLed every 5 s
//     until -kills kills, and the time from each SIGKILL to each of the
//     dead coordinator's jobs being taken up by another; p50 and p99.
//
// Every program is a process, and so is the broker (a nats-server, a
// rabbitmq-server node of its own), each round on fresh ports and data.
func runFleet(args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	buses := fs.String("bus", "nats,rabbitmq", "brokers to measure on")
	runs := fs.Int("runs", 3, "throughput rounds per number of coordinators")
	jobs := fs.Int("jobs", 20, "concurrent jobs")
	tasks := fs.Int("tasks", 500, "tasks per job (throughput)")
	kills := fs.Int("kills", 20, "coordinator kills (takeover); 0: skip")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "skein-bench-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins, err := chaos.Build(ctx, filepath.Join(dir, "bin"), false)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	defer tw.Flush()
	fmt.Fprintf(tw, "bus\tbroker\tmeasure\tcoordinators\truns\tmedian\t\n")
	round := 0
	fleet := func(bus string, cfg chaos.FleetConfig) (*chaos.FleetReport, error) {
		round++
		rdir := filepath.Join(dir, fmt.Sprintf("round%d", round))
		procs, err := chaos.NewProcs(filepath.Join(rdir, "logs"))
		if err != nil {
			return nil, err
		}
		defer procs.Close()
		var broker chaos.Broker
		switch bus {
		case "nats":
			path, err := exec.LookPath("nats-server")
			if err != nil {
				return nil, fmt.Errorf("nats-server: %w (scripts/services/nats.sh installs it)", err)
			}
			broker, err = chaos.NewNATSServer(procs, path, filepath.Join(rdir, "broker"))
			if err != nil {
				return nil, err
			}
		case "rabbitmq":
			broker, err = chaos.NewRabbitMQServer(procs, filepath.Join(chaos.RabbitMQDir, "rabbitmq-server"), filepath.Join(rdir, "broker"))
			if err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown bus %q", bus)
		}
		defer broker.Close()
		cfg.Bins, cfg.Procs, cfg.Broker, cfg.DataDir = bins, procs, broker, filepath.Join(rdir, "data")
		r := chaos.RunFleet(ctx, cfg)
		if r.Failed() {
			return r, fmt.Errorf("%s round failed:\n%s", bus, r.Summary())
		}
		return r, nil
	}
	for _, bus := range strings.Split(*buses, ",") {
		bus = strings.TrimSpace(bus)
		walls := map[int][]float64{}
		server := ""
		for range *runs {
			for _, n := range []int{1, 3} {
				r, err := fleet(bus, chaos.FleetConfig{Coordinators: n, Jobs: *jobs, Tasks: *tasks, Sleep: -1, KillEvery: -1})
				if err != nil {
					return err
				}
				server = r.Server
				walls[n] = append(walls[n], r.Wall.Seconds())
			}
		}
		total := float64(*jobs * *tasks)
		for _, n := range []int{1, 3} {
			w := stats.Percentile(walls[n], 50)
			fmt.Fprintf(tw, "%s\t%s\t%d jobs × %d tasks, tasks/s\t%d\t%d\t%.0f\t\n", bus, server, *jobs, *tasks, n, len(walls[n]), total/w)
		}
		fmt.Fprintf(tw, "%s\t%s\tthroughput ratio 3/1\t\t\t%.2f\t\n", bus, server, stats.Percentile(walls[1], 50)/stats.Percentile(walls[3], 50))
		if *kills > 0 {
			r, err := fleet(bus, chaos.FleetConfig{Kills: *kills, Tasks: *kills*15 + 30, Deadline: time.Duration(*kills)*20*time.Second + 2*time.Minute})
			if err != nil {
				return err
			}
			ms := make([]float64, len(r.Takeovers))
			for i, d := range r.Takeovers {
				ms[i] = float64(d.Milliseconds())
			}
			slices.Sort(ms)
			fmt.Fprintf(tw, "%s\t%s\ttakeover after SIGKILL, ms p50 (%d kills, %d jobs taken over)\t3\t\t%.0f\t\n", bus, r.Server, r.Kills, len(ms), stats.Percentile(ms, 50))
			fmt.Fprintf(tw, "%s\t%s\ttakeover after SIGKILL, ms p99\t3\t\t%.0f\t\n", bus, r.Server, stats.Percentile(ms, 99))
		}
		tw.Flush()
	}
	return nil
}
