// Package fanout measures Skein's fan-out: N no-op tasks from submit to
// the full result, against the floor of a bare JetStream loop (publish a
// task, a consumer acks it and publishes an event, a subscriber counts
// events) measured in the same run.
package fanout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/wire"
)

// Result is one measured run.
type Result struct {
	N        int
	Wall     time.Duration
	LatP50   time.Duration // completion latency: function end -> coordinator recorded
	LatP99   time.Duration
	PeakRSS  int64 // bytes, of the submit process (embedded: coordinator, bus and workers)
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
	r := Result{N: n, Wall: wall, LatP50: time.Duration(st.LatencyP50us) * time.Microsecond, LatP99: time.Duration(st.LatencyP99us) * time.Microsecond,
		Commands: "submit " + strings.Join(args[:4], " ") + " …"}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSS = ru.Maxrss * 1024
	}
	return r, nil
}

// Floor runs the bare JetStream loop over n tasks with the same streams
// and consumer settings Skein uses, in-process on an embedded server.
func Floor(ctx context.Context, n int, prefetch int) (Result, error) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		return Result{}, err
	}
	defer srv.Shutdown()
	// Three connections, like Skein's submit (coordinator), runtime, and the
	// event reader.
	pub, err := nats.Connect("", nats.InProcessServer(srv.Server()))
	if err != nil {
		return Result{}, err
	}
	defer pub.Close()
	work, err := nats.Connect("", nats.InProcessServer(srv.Server()))
	if err != nil {
		return Result{}, err
	}
	defer work.Close()
	pjs, _ := jetstream.New(pub, jetstream.WithPublishAsyncMaxPending(4096))
	wjs, _ := jetstream.New(work, jetstream.WithPublishAsyncMaxPending(4096))
	if _, err := pjs.CreateStream(ctx, jetstream.StreamConfig{Name: "FT", Subjects: []string{"ft.task.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		return Result{}, err
	}
	if _, err := pjs.CreateStream(ctx, jetstream.StreamConfig{Name: "FE", Subjects: []string{"ft.ev.>"}, Storage: jetstream.FileStorage}); err != nil {
		return Result{}, err
	}
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
		var sent int64
		_ = json.Unmarshal(m.Data(), &sent)
		lats = append(lats, time.Since(time.Unix(0, sent)))
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	if err != nil {
		return Result{}, err
	}
	defer cc.Stop()
	wc, err := cons.Consume(func(m jetstream.Msg) {
		// The "function" is a no-op; the event carries its end time.
		now := []byte(fmt.Sprint(time.Now().UnixNano()))
		f, err := wjs.PublishAsync("ft.ev.job", now)
		if err != nil {
			return
		}
		go func() {
			select {
			case <-f.Ok():
				_ = m.Ack()
			case <-f.Err():
			}
		}()
	}, jetstream.PullMaxMessages(prefetch))
	if err != nil {
		return Result{}, err
	}
	defer wc.Stop()
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
	sort.Slice(lats, func(a, b int) bool { return lats[a] < lats[b] })
	return Result{N: n, Wall: wall, LatP50: lats[len(lats)/2], LatP99: lats[len(lats)*99/100]}, nil
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
	sort.Slice(lats, func(a, b int) bool { return lats[a] < lats[b] })
	return lats[len(lats)/2], lats[len(lats)*99/100], nil
}
