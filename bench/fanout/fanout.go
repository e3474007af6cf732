// Package fanout measures Skein's fan-out: N no-op tasks from submit to
// the full result, against the floor of a bare JetStream loop (publish a
// task, a consumer acks it and publishes an event, a subscriber counts
// events) measured in the same run.
package fanout

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/profile"
	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/wire"
)

// Result is one measured run.
type Result struct {
	N      int
	Wall   time.Duration
	LatP50 time.Duration // completion latency: function end -> its event read (Skein: by the coordinator)
	LatP99 time.Duration
	// MsgsPerTask is the messages the clients exchanged with the broker
	// per task (0: not measured).
	MsgsPerTask float64
	PeakRSS     int64 // bytes, of the submit process (embedded: coordinator, bus and workers)
	// CPU is the processor time (user and system) the run cost its
	// clients: Skein's submit process (embedded: with its server,
	// coordinator and workers) and, on a broker, the coordinator's and
	// runtimes' processes; the floor's loop. ServerCPU is the broker's,
	// when its process is known (0: not measured). On a shared, loaded
	// machine CPU time is steadier than wall time.
	CPU, ServerCPU time.Duration
	// Job is Skein's job alone: from the coordinator's accepting it to its
	// end, by the coordinator's clock (the status's Submitted and Ended).
	// Wall minus Job is the submit process's own share: its start,
	// reading the input, the submission's round trip, noticing the end,
	// fetching and printing the results. 0 for the floor.
	Job      time.Duration
	Commands string
}

// TasksPerSec is N over the wall time.
func (r Result) TasksPerSec() float64 { return float64(r.N) / r.Wall.Seconds() }

// Submit runs `submit map --function noop` over n elements as a separate
// process (process start included) and reads its stats.
func Submit(ctx context.Context, submitBin string, n int, extraArgs ...string) (Result, error) {
	dir, err := os.MkdirTemp("", "skein-fanout-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	iter := filepath.Join(dir, "iter.json")
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("null")
	}
	b.WriteByte(']')
	if err := os.WriteFile(iter, b.Bytes(), 0o644); err != nil {
		return Result{}, err
	}
	statusFile := filepath.Join(dir, "status.json")
	args := append([]string{"map", "--function", "noop", "--iterdata-from", iter, "--quiet", "--status-file", statusFile}, extraArgs...)
	cmd := exec.CommandContext(ctx, submitBin, args...)
	// submit reports its own peak RSS: wait4's rusage of a child started
	// with vfork is this process's peak when that was larger.
	rssFile := filepath.Join(dir, "peak-rss")
	cmd.Env = append(os.Environ(), "SKEIN_PEAK_RSS_FILE="+rssFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return Result{}, fmt.Errorf("submit: %v: %s", err, errb.String())
	}
	var res []json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != n {
		return Result{}, fmt.Errorf("submit printed %d results (%v), want %d", len(res), err, n)
	}
	var st wire.JobStatus
	sb, err := os.ReadFile(statusFile)
	if err != nil {
		return Result{}, err
	}
	if err := json.Unmarshal(sb, &st); err != nil {
		return Result{}, err
	}
	r := Result{N: n, Wall: wall, Job: time.Duration(st.Ended - st.Submitted), LatP50: time.Duration(st.LatencyP50us) * time.Microsecond, LatP99: time.Duration(st.LatencyP99us) * time.Microsecond,
		Commands: "submit " + strings.Join(args[:4], " ") + " …"}
	if b, err := os.ReadFile(rssFile); err == nil {
		r.PeakRSS, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

// SelfCPU is the processor time this process has used so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcCPU is the processor time process pid has used so far, from
// /proc/PID/stat (Linux; 10 ms resolution).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// Floor runs the bare JetStream loop over n tasks with the same streams
// and consumer settings Skein uses, in-process on an embedded server.
func Floor(ctx context.Context, n int, prefetch int) (Result, error) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		return Result{}, err
	}
	defer srv.Shutdown()
	// The same storage as Skein's embedded mode: the tasks in memory (its
	// job backlog bounds them), the events on files (in the server's
	// temporary directory), so that a million-task job's events do not
	// stay in memory.
	return floor(ctx, n, prefetch, "", jetstream.MemoryStorage, jetstream.FileStorage, nats.InProcessServer(srv.Server()))
}

// FloorURL is Floor against a NATS server at url (streams of its own,
// removed afterwards).
func FloorURL(ctx context.Context, url string, n int, prefetch int) (Result, error) {
	return floor(ctx, n, prefetch, url, jetstream.FileStorage, jetstream.FileStorage)
}

func floor(ctx context.Context, n int, prefetch int, url string, taskStorage, eventStorage jetstream.StorageType, opts ...nats.Option) (Result, error) {
	// Two connections, like Skein's coordinator and runtime.
	pub, err := nats.Connect(url, opts...)
	if err != nil {
		return Result{}, err
	}
	defer pub.Close()
	work, err := nats.Connect(url, opts...)
	if err != nil {
		return Result{}, err
	}
	defer work.Close()
	pjs, _ := jetstream.New(pub, jetstream.WithPublishAsyncMaxPending(4096))
	wjs, _ := jetstream.New(work, jetstream.WithPublishAsyncMaxPending(4096))
	_ = pjs.DeleteStream(ctx, "FT")
	_ = pjs.DeleteStream(ctx, "FE")
	if _, err := pjs.CreateStream(ctx, jetstream.StreamConfig{Name: "FT", Subjects: []string{"ft.task.>"}, Retention: jetstream.WorkQueuePolicy, Storage: taskStorage}); err != nil {
		return Result{}, err
	}
	if _, err := pjs.CreateStream(ctx, jetstream.StreamConfig{Name: "FE", Subjects: []string{"ft.ev.>"}, Storage: eventStorage}); err != nil {
		return Result{}, err
	}
	defer pjs.DeleteStream(context.Background(), "FT")
	defer pjs.DeleteStream(context.Background(), "FE")
	cons, err := wjs.CreateOrUpdateConsumer(ctx, "FT", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1 << 20})
	if err != nil {
		return Result{}, err
	}
	ocons, err := pjs.OrderedConsumer(ctx, "FE", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"ft.ev.>"}})
	if err != nil {
		return Result{}, err
	}
	var got atomic.Int64
	done := make(chan struct{})
	var lats []time.Duration
	cc, err := ocons.Consume(func(m jetstream.Msg) {
		// An event message carries the end times of the tasks it reports.
		now := time.Now()
		for b := m.Data(); len(b) >= 8; b = b[8:] {
			lats = append(lats, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(b)))))
			if got.Add(1) == int64(n) {
				close(done)
			}
		}
	})
	if err != nil {
		return Result{}, err
	}
	defer cc.Stop()
	// The worker batches events as Skein's runtime does: a publisher takes
	// what finished tasks are waiting (up to 128), publishes one event
	// message for them and acks them once it is stored. Nothing waits for
	// a batch to fill.
	finished := make(chan finishedTask, 2*prefetch)
	var pubs sync.WaitGroup
	defer func() { close(finished); pubs.Wait() }()
	for range 8 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			batch := make([]finishedTask, 0, 128)
			for f := range finished {
				batch = append(batch[:0], f)
			drain:
				for len(batch) < 128 {
					select {
					case f2, ok := <-finished:
						if !ok {
							break drain
						}
						batch = append(batch, f2)
					default:
						break drain
					}
				}
				body := make([]byte, 0, 8*len(batch))
				for _, f := range batch {
					body = binary.BigEndian.AppendUint64(body, uint64(f.end))
				}
				if _, err := wjs.Publish(ctx, "ft.ev.job", body); err != nil {
					continue
				}
				for _, f := range batch {
					_ = f.m.Ack()
				}
			}
		}()
	}
	wc, err := cons.Consume(func(m jetstream.Msg) {
		// The "function" is a no-op; the event carries its end time.
		finished <- finishedTask{m: m, end: time.Now().UnixNano()}
	}, jetstream.PullMaxMessages(prefetch))
	if err != nil {
		return Result{}, err
	}
	defer wc.Stop()
	before := msgs(pub, work)
	start := time.Now()
	payload := make([]byte, 64)
	for i := 0; i < n; i++ {
		if _, err := pjs.PublishAsync("ft.task.default.job", payload); err != nil {
			return Result{}, err
		}
		if i%2048 == 2047 {
			<-pjs.PublishAsyncComplete()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-time.After(5 * time.Minute):
		return Result{}, fmt.Errorf("floor: %d of %d events after 5 minutes", got.Load(), n)
	}
	wall := time.Since(start)
	slices.Sort(lats)
	return Result{N: n, Wall: wall, LatP50: stats.Sorted(lats, 50), LatP99: stats.Sorted(lats, 99),
		MsgsPerTask: float64(msgs(pub, work)-before) / float64(n)}, nil
}

// finishedTask is a floor task whose no-op ran, waiting for its event.
type finishedTask struct {
	m   jetstream.Msg
	end int64
}

// msgs counts the messages the connections sent and received: what the
// floor cost the broker (publishes, acks and their replies, pull
// requests, deliveries).
func msgs(conns ...*nats.Conn) uint64 {
	var n uint64
	for _, c := range conns {
		st := c.Stats()
		n += st.InMsgs + st.OutMsgs
	}
	return n
}

// Median returns the run with the median wall time.
func Median(rs []Result) Result {
	s := append([]Result(nil), rs...)
	sort.Slice(s, func(a, b int) bool { return s[a].Wall < s[b].Wall })
	return s[len(s)/2]
}

// Isolated runs jobs one-task jobs one after another in an in-process
// embedded installation and returns the median and p99 of the
// coordinator-recorded completion latency (function end -> recorded).
func Isolated(ctx context.Context, jobs int) (p50, p99 time.Duration, err error) {
	c, err := embedded.Start(ctx, embedded.Config{Workers: 1})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var lats []time.Duration
	for i := 0; i < jobs; i++ {
		_, st, err := c.Client.Run(ctx, &wire.JobSpec{Kind: wire.JobCall, Function: "noop", Data: wire.Value("null")})
		if err != nil {
			return 0, 0, err
		}
		lats = append(lats, time.Duration(st.LatencyP50us)*time.Microsecond)
	}
	return stats.Percentile(lats, 50), stats.Percentile(lats, 99), nil
}

// Services is a coordinator and runtimes running as processes on a bus,
// for the fan-out over a broker.
type Services struct {
	procs []*exec.Cmd
	log   *syncWriter // the coordinator's log
}

// Log returns what the coordinator logged so far.
func (s *Services) Log() string { return s.log.String() }

// StartServices starts `coordinator --bus url` and `runtime --bus url`
// (runtimes processes of slots slots each) from binDir and waits until the
// coordinator serves.
func StartServices(binDir, url string, runtimes, slots, prefetch int) (*Services, error) {
	s := &Services{}
	var logb bytes.Buffer
	co := exec.Command(filepath.Join(binDir, "coordinator"), "--bus", url, "--log-level", "info")
	co.Stderr = &syncWriter{w: &logb}
	if err := co.Start(); err != nil {
		return nil, err
	}
	s.procs = append(s.procs, co)
	for i := 0; i < runtimes; i++ {
		args := []string{"--bus", url, "--slots", fmt.Sprint(slots), "--log-level", "warn"}
		if prefetch > 0 {
			args = append(args, "--prefetch", fmt.Sprint(prefetch))
		}
		rt := exec.Command(filepath.Join(binDir, "runtime"), args...)
		if err := rt.Start(); err != nil {
			s.Stop()
			return nil, err
		}
		s.procs = append(s.procs, rt)
	}
	deadline := time.Now().Add(20 * time.Second)
	sw := co.Stderr.(*syncWriter)
	s.log = sw
	for !strings.Contains(sw.String(), "coordinator serving") {
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("coordinator did not come up: %s", sw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, nil
}

// Stop ends the processes.
func (s *Services) Stop() {
	for _, p := range s.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s.procs {
		_ = p.Wait()
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

// CPU is the processor time the coordinator and runtime processes have
// used so far.
func (s *Services) CPU() time.Duration {
	var sum time.Duration
	for _, p := range s.procs {
		if d, err := ProcCPU(p.Process.Pid); err == nil {
			sum += d
		}
	}
	return sum
}

// CoordinatorPeakRSS is the coordinator process's peak resident set in
// bytes so far (VmHWM in /proc; Linux only).
func (s *Services) CoordinatorPeakRSS() (int64, error) {
	if len(s.procs) == 0 {
		return 0, fmt.Errorf("no coordinator")
	}
	return profile.PeakRSS(s.procs[0].Process.Pid)
}

// MedianRSS is the median of the runs' peak RSS.
func MedianRSS(rs []Result) int64 {
	v := make([]int64, len(rs))
	for i, r := range rs {
		v[i] = r.PeakRSS
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// VarzMsgs reads the messages a NATS server received and sent so far
// from its monitoring endpoint (nats-server -m): read before and after a
// run, it counts what the run cost the broker, whoever the clients were.
func VarzMsgs(ctx context.Context, monitor string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(monitor, "/")+"/varz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		InMsgs  uint64 `json:"in_msgs"`
		OutMsgs uint64 `json:"out_msgs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("varz: %w", err)
	}
	return v.InMsgs + v.OutMsgs, nil
}

// MedianJob is the median of the runs' Job.
func MedianJob(rs []Result) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = r.Job
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// MedianCPU is the median of the runs' CPU plus ServerCPU (0 when a run
// has none).
func MedianCPU(rs []Result) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = r.CPU + r.ServerCPU
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}
