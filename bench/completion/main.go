// Command completion-bench measures completion-detection latency (a task's
// function ends → the coordinator knows) for Skein's event path against the
// storage-polling monitor Lithops uses, in one run.
//
// Events: a real map job of -tasks "sleep" tasks with random 0..-max-sleep
// durations on the embedded stack (NATS JetStream in-process, coordinator,
// -slots runtime slots); the coordinator records now − Event.Finished for
// every task and reports p50/p99 in the job's status.
//
// Polling: the same sleep durations on -slots goroutines that write a status
// object per task when the sleep ends (as a runtime in poll mode does), and
// a pollmon.Monitor listing the job's status prefix every interval; latency
// is the listing that noticed the object minus the sleep's end. Stores: the
// local directory store, and S3 (versitygw) when SKEIN_TEST_S3_ENDPOINT,
// SKEIN_TEST_S3_ACCESS and SKEIN_TEST_S3_SECRET are set.
//
// With -real, the polling rows run Skein's real poll mode instead of the
// stand-in goroutines: a map job with JobSpec.Monitor "poll" on the embedded
// stack, whose runtimes write the status objects (runtime.Config.PollStatus)
// and whose coordinator ends the job when its pollmon.Monitor has listed
// them all (coordinator.Hooks.Poll); latency is the job's own p50/p99.
//
//	go run ./bench/completion -tasks 1000 -slots 100 -intervals 100ms,1s,2s [-real]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/pollmon"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

func main() {
	tasks := flag.Int("tasks", 1000, "tasks per run")
	slots := flag.Int("slots", 100, "concurrent function slots")
	maxSleep := flag.Duration("max-sleep", 500*time.Millisecond, "task durations are uniform in [0, max-sleep)")
	intervals := flag.String("intervals", "100ms,1s,2s", "polling intervals")
	seed := flag.Uint64("seed", 1, "random seed for the durations")
	svgOut := flag.String("svg", "", "also draw the p50/p99 chart as an SVG file")
	flag.BoolVar(&realPoll, "real", false, "polling rows through the real poll mode (runtime and coordinator hooks) instead of stand-in goroutines")
	flag.Parse()
	if err := run(*tasks, *slots, *maxSleep, *intervals, *seed, *svgOut); err != nil {
		fmt.Fprintln(os.Stderr, "completion-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	mode, store       string
	p50, p99          time.Duration
	lists, puts, gets int64
	wall              time.Duration
}

func run(tasks, slots int, maxSleep time.Duration, intervalList string, seed uint64, svgOut string) error {
	if tasks <= 0 || slots <= 0 || maxSleep < 0 {
		return fmt.Errorf("-tasks and -slots must be positive and -max-sleep not negative")
	}
	var ivs []time.Duration
	for _, s := range strings.Split(intervalList, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			return fmt.Errorf("-intervals: %q is not a positive duration", s)
		}
		ivs = append(ivs, d)
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	sleeps := make([]float64, tasks) // seconds
	for i := range sleeps {
		sleeps[i] = float64(rng.Int64N(int64(maxSleep)+1)) / 1e9
	}
	ctx := context.Background()
	var results []result

	r, err := runEvents(ctx, sleeps, slots)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	results = append(results, r)

	dir, err := os.MkdirTemp("", "completion-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	local, err := storage.NewLocal(dir, nil)
	if err != nil {
		return err
	}
	type st struct {
		name  string
		store storage.Store
		mk    func(context.Context, string) error
	}
	stores := []st{{"local", local, local.MakeBucket}}
	if ep := os.Getenv("SKEIN_TEST_S3_ENDPOINT"); ep != "" {
		c, err := storage.NewCOS(storage.COSConfig{Endpoint: ep, Region: storage.DefaultRegion, PathStyle: true,
			AccessKey: os.Getenv("SKEIN_TEST_S3_ACCESS"), SecretKey: storage.Secret(os.Getenv("SKEIN_TEST_S3_SECRET"))}, storage.SchemeS3, nil)
		if err != nil {
			return err
		}
		stores = append(stores, st{"s3 (versitygw)", c, c.MakeBucket})
	}
	for _, s := range stores {
		bucket := fmt.Sprintf("completion-%d", time.Now().UnixNano())
		if err := s.mk(ctx, bucket); err != nil {
			return fmt.Errorf("%s: make bucket: %w", s.name, err)
		}
		for _, iv := range ivs {
			poll := runPoll
			if realPoll {
				poll = runRealPoll
			}
			r, err := poll(ctx, pollmon.FromStore(s.store), bucket, sleeps, slots, iv)
			if err != nil {
				return fmt.Errorf("poll %v on %s: %w", iv, s.name, err)
			}
			r.store = s.name
			results = append(results, r)
		}
	}

	fmt.Printf("%d tasks, sleeps uniform in [0, %v), %d slots\n\n", tasks, maxSleep, slots)
	fmt.Println("| mode | store | p50 | p99 | storage requests (list + put) | job wall time |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		req := "0"
		if r.mode != "events" {
			req = fmt.Sprintf("%d (%d + %d)", r.lists+r.puts+r.gets, r.lists, r.puts)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", r.mode, r.store, fmtD(r.p50), fmtD(r.p99), req, r.wall.Round(10*time.Millisecond))
	}
	if svgOut != "" {
		title := fmt.Sprintf("Completion-detection latency, %d tasks of 0–%v sleeps", tasks, maxSleep)
		if err := os.WriteFile(svgOut, []byte(chart(title, results)), 0o644); err != nil {
			return err
		}
	}
	ev := results[0]
	for _, r := range results[1:] {
		if ev.p50 > 0 {
			fmt.Fprintf(os.Stderr, "%s %s: p50 %.0fx the event path's\n", r.mode, r.store, float64(r.p50)/float64(ev.p50))
		}
	}
	return nil
}

func runEvents(ctx context.Context, sleeps []float64, slots int) (result, error) {
	c, err := embedded.Start(ctx, embedded.Config{Workers: slots})
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	it, _ := json.Marshal(sleeps)
	start := time.Now()
	_, st, err := c.Client.Run(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: it})
	if err != nil {
		return result{}, err
	}
	if st.State != wire.StateDone {
		return result{}, fmt.Errorf("job ended %s", st.State)
	}
	return result{mode: "events", store: "none", p50: time.Duration(st.LatencyP50us) * time.Microsecond,
		p99: time.Duration(st.LatencyP99us) * time.Microsecond, wall: time.Since(start)}, nil
}

// runPoll plays the runtimes of a poll-mode job: slots goroutines take the
// tasks in order, sleep, and write the status object; a Monitor watches.
func runPoll(ctx context.Context, store pollmon.Store, bucket string, sleeps []float64, slots int, iv time.Duration) (result, error) {
	job := fmt.Sprintf("job-%d", time.Now().UnixNano())
	m, err := pollmon.New(store, pollmon.Config{Bucket: bucket, Prefix: "skein", Interval: iv}, nil)
	if err != nil {
		return result{}, err
	}
	finished := make([]int64, len(sleeps))
	var next, puts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, slots)
	start := time.Now()
	for s := 0; s < slots; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(sleeps) {
					return
				}
				time.Sleep(time.Duration(sleeps[i] * 1e9))
				end := time.Now().UnixNano()
				atomic.StoreInt64(&finished[i], end)
				puts.Add(1)
				if err := pollmon.WriteStatus(ctx, store, bucket, "skein", pollmon.Status{Job: job, Task: i, Attempt: 1, State: "done", Finished: end}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	lat := make([]time.Duration, 0, len(sleeps))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	err = m.Watch(wctx, job, len(sleeps), func(c pollmon.Completion) {
		lat = append(lat, c.Noticed.Sub(time.Unix(0, atomic.LoadInt64(&finished[c.Task]))))
	})
	wg.Wait()
	close(errs)
	if e := <-errs; e != nil {
		return result{}, e
	}
	if err != nil {
		return result{}, err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s := m.Stats()
	return result{mode: "poll " + iv.String(), p50: pct(lat, 0.5), p99: pct(lat, 0.99), lists: s.Lists, gets: s.Gets, puts: puts.Load(), wall: time.Since(start)}, nil
}

func pct(sorted []time.Duration, q float64) time.Duration {
	return stats.Sorted(sorted, q*100)
}

func fmtD(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// chart draws p50 (solid) and p99 (light) bars per mode on a log scale
// from 100 µs to 10 s.
func chart(title string, rs []result) string {
	const left, width, rowH, top = 250.0, 560.0, 30.0, 40.0
	lo, hi := math.Log10(1e-4), math.Log10(10)
	x := func(d time.Duration) float64 {
		v := math.Log10(max(d.Seconds(), 1e-4))
		return left + (v-lo)/(hi-lo)*width
	}
	h := top + float64(len(rs))*rowH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %.0f" width="%d" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", int(left+width+30), h, int(left+width+30), h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/><text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", title)
	for _, t := range []float64{1e-4, 1e-3, 1e-2, 1e-1, 1, 10} {
		d := time.Duration(t * 1e9)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			x(d), x(d), top-6, h-32, x(d), h-18, fmtD(d))
	}
	for i, r := range rs {
		y := top + float64(i)*rowH
		colour := "#c62828"
		if r.mode == "events" {
			colour = "#2e7d32"
		}
		label := r.mode
		if r.store != "none" {
			label += ", " + r.store
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, left-8, y+15, label)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="18" fill="%s" opacity="0.3"/>`, left, y+2, x(r.p99)-left, colour)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="18" fill="%s"/>`, left, y+2, x(r.p50)-left, colour)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="11">%s / %s</text>`+"\n", x(r.p99)+4, y+15, fmtD(r.p50), fmtD(r.p99))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">function end → coordinator knows (log scale; dark p50, light p99)</text>`+"\n", left+width/2, h-4)
	b.WriteString("</svg>\n")
	return b.String()
}

// realPoll is -real.
var realPoll bool

// runRealPoll runs a poll-mode job on the embedded stack, with the runtime
// writing status objects to store and the coordinator's poller listing
// them.
func runRealPoll(ctx context.Context, store pollmon.Store, bucket string, sleeps []float64, slots int, iv time.Duration) (result, error) {
	var puts atomic.Int64
	var mu sync.Mutex
	var mon *pollmon.Monitor
	cfg := embedded.Config{Workers: slots}
	cfg.Coordinator.Hooks.Poll = func(ctx context.Context, job string, total int, interval time.Duration, seen func(int, time.Time)) error {
		m, err := pollmon.New(store, pollmon.Config{Bucket: bucket, Prefix: "skein", Interval: interval}, nil)
		if err != nil {
			return err
		}
		mu.Lock()
		mon = m
		mu.Unlock()
		return m.Watch(ctx, job, total, func(c pollmon.Completion) { seen(c.Task, c.Noticed) })
	}
	cfg.Runtime.PollStatus = func(ctx context.Context, t *wire.Task, ev *wire.Event) error {
		puts.Add(1)
		return pollmon.WriteStatus(ctx, store, bucket, "skein", pollmon.Status{Job: t.Job, Task: t.Index, Attempt: t.Attempt,
			State: string(ev.Type), Worker: ev.Worker, Started: ev.Started, Finished: ev.Finished})
	}
	c, err := embedded.Start(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	it, _ := json.Marshal(sleeps)
	start := time.Now()
	_, st, err := c.Client.Run(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "sleep", Iterdata: it, Monitor: "poll", PollIntervalMS: max(iv.Milliseconds(), 1)})
	if err != nil {
		return result{}, err
	}
	if st.State != wire.StateDone {
		return result{}, fmt.Errorf("job ended %s", st.State)
	}
	r := result{mode: "poll " + iv.String() + " (real)", p50: time.Duration(st.LatencyP50us) * time.Microsecond,
		p99: time.Duration(st.LatencyP99us) * time.Microsecond, puts: puts.Load(), wall: time.Since(start)}
	mu.Lock()
	if mon != nil {
		ms := mon.Stats()
		r.lists, r.gets = ms.Lists, ms.Gets
	}
	mu.Unlock()
	return r, nil
}
