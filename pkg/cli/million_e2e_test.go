package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/profile"
	"github.com/skeinrun/skein/internal/testenv"
)

// The sizes of the million-task tests. make test runs them scaled down
// (50,000 tasks, inputs just past the 8 MB message limit);
// SKEIN_MILLION=1 (make million) runs them at full size: 1,000,000 tasks,
// a 50 MB --data-from and a 200 MB iterdata file.
type millionSizes struct {
	tasks          int
	dataMB, iterMB int
	// coordMB bounds the coordinator process's peak RSS (VmHWM) over a
	// job of tasks no-op tasks on a broker; embeddedMB the whole embedded
	// submit process's (server, coordinator, workers, client).
	coordMB, embeddedMB int
}

func sizes() millionSizes {
	if os.Getenv("SKEIN_MILLION") == "1" {
		return millionSizes{tasks: 1_000_000, dataMB: 50, iterMB: 200, coordMB: 400, embeddedMB: 400}
	}
	// 160 MB for a coordinator at this size: about 80 MB live and in
	// its caches, plus up to the 64 MiB of garbage the heap floor
	// (SKEIN_GC_FLOOR) lets a small heap grow to before a collection.
	// The embedded process measures 102–112 MB, but its own JetStream
	// server's file stores make it vary with the disk: 161 MB once
	// beside a writer that fsyncs gigabytes, 207 MB once in a full
	// make test run. 240 MB is over that; a leak of 3 KB a task (150 MB
	// at this size) still crosses it.
	return millionSizes{tasks: 50_000, dataMB: 10, iterMB: 12, coordMB: 160, embeddedMB: 240}
}

// privateNATS starts a nats-server of the test's own (a million-task job's
// streams stay out of the shared server) and returns its URL.
func privateNATS(t *testing.T) string {
	t.Helper()
	bins := strings.Split(testenv.Require(t, testenv.NATSServers), ":")
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: \"127.0.0.1:-1\"\nmax_payload: 8MB\njetstream { store_dir: %q }\n", filepath.Join(dir, "js"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins[0], "-c", conf)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(out.String(), "\n") {
			if _, addr, ok := strings.Cut(line, "Listening for client connections on "); ok {
				return "nats://" + strings.TrimSpace(addr)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nats-server did not start:\n%s", out.String())
	return ""
}

// vmHWM is a process's peak resident set in MB.
func vmHWM(t *testing.T, p *proc) int {
	t.Helper()
	b, err := profile.PeakRSS(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return int(b >> 20)
}

// run runs submit to its end and returns stdout, stderr, exit code and
// peak RSS in MB.
func run(t *testing.T, timeout time.Duration, args ...string) (string, string, int, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "submit"), args...)
	// The program reports its own peak (wait4's rusage of a child started
	// with vfork is the test process's peak when that was larger).
	rssFile := filepath.Join(t.TempDir(), "peak-rss")
	cmd.Env = append(os.Environ(), "SKEIN_PEAK_RSS_FILE="+rssFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("submit: %v", err)
	}
	b, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatalf("submit wrote no peak RSS: %v", err)
	}
	peak, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("peak RSS %q: %v", b, err)
	}
	return stdout.String(), stderr.String(), code, int(peak >> 20)
}

// nulls is the result of n no-op tasks.
func nulls(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("null,", n), ",") + "]\n"
}

// writeInts writes the list 0..n-1.
func writeInts(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "iter.json")
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteByte(']')
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLargeInputs: a --data-from and an --iterdata-from larger than one
// bus message (full size: 50 MB and 200 MB) run, embedded and on both
// buses, with every result exact; on a bus, submit reads its input once
// and stays small (it used to grow to 6.5 times the input).
func TestLargeInputs(t *testing.T) {
	sz := sizes()
	dir := t.TempDir()
	// data: {"values":[0,1,2,…]} of dataMB; sum computes its sum.
	dataFile := filepath.Join(dir, "data.json")
	var wantData int64
	{
		f, err := os.Create(dataFile)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		w.WriteString(`{"values":[`)
		size := 11
		for i := 0; size < sz.dataMB<<20; i++ {
			if i > 0 {
				w.WriteByte(',')
				size++
			}
			s := strconv.Itoa(i % 1000003)
			w.WriteString(s)
			size += len(s)
			wantData += int64(i % 1000003)
		}
		w.WriteString("]}")
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	// iterdata: elements [[…100 KB of numbers…]]; sum of each.
	iterFile := filepath.Join(dir, "iter.json")
	var want []int64
	{
		f, err := os.Create(iterFile)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		w.WriteByte('[')
		for e := 0; len(want)*100<<10 < sz.iterMB<<20; e++ {
			if e > 0 {
				w.WriteByte(',')
			}
			w.WriteString("[[")
			var sum int64
			for i, size := 0, 0; size < 100<<10; i++ {
				if i > 0 {
					w.WriteByte(',')
				}
				v := (e*7919 + i) % 100000
				s := strconv.Itoa(v)
				w.WriteString(s)
				size += len(s) + 1
				sum += int64(v)
			}
			w.WriteString("]]")
			want = append(want, sum)
		}
		w.WriteByte(']')
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	wantIter, _ := json.Marshal(want)
	for _, bk := range []busKind{{"embedded", ""}, {"nats", testenv.NATSURL}, {"rabbitmq", testenv.AMQPURL}} {
		t.Run(bk.name, func(t *testing.T) {
			var busArgs []string
			if bk.env != "" {
				url := namespaced(t, testenv.Require(t, bk.env))
				cluster(t, url, 1, "--prefetch", "8")
				busArgs = []string{"--bus", url}
			}
			out, errOut, code, rss := run(t, 5*time.Minute, append([]string{"call", "--function", "sum", "--data-from", dataFile, "--quiet"}, busArgs...)...)
			if code != 0 || out != fmt.Sprintf("%d\n", wantData) {
				t.Fatalf("call over %d MB of data: exit %d, %q, want %d; stderr:\n%s", sz.dataMB, code, out, wantData, errOut)
			}
			t.Logf("call over %d MB of data: submit peak RSS %d MB", sz.dataMB, rss)
			if bk.env != "" && rss > 100 {
				t.Errorf("submit peaked at %d MB for a %d MB input: it should read the input once, a chunk at a time", rss, sz.dataMB)
			}
			out, errOut, code, rss = run(t, 5*time.Minute, append([]string{"map", "--function", "sum", "--iterdata-from", iterFile, "--quiet"}, busArgs...)...)
			if code != 0 || out != string(wantIter)+"\n" {
				t.Fatalf("map over %d MB of iterdata: exit %d, %.200q, want %.200s; stderr:\n%s", sz.iterMB, code, out, wantIter, errOut)
			}
			t.Logf("map over %d MB of iterdata (%d tasks): submit peak RSS %d MB", sz.iterMB, len(want), rss)
			if bk.env != "" && rss > 100 {
				t.Errorf("submit peaked at %d MB for a %d MB input: it should read the input once, a chunk at a time", rss, sz.iterMB)
			}
		})
	}
}

// TestMillionTasks: a map of sizes().tasks no-op tasks completes embedded,
// on nats-server and on RabbitMQ, and on the brokers the coordinator is
// SIGKILLed a third of the way through and started again: the new coordinator takes
// the job up from the job log (reading its iterdata back from its chunks)
// and every result is right. Each coordinator process stays under the
// memory bound.
func TestMillionTasks(t *testing.T) {
	sz := sizes()
	iter := writeInts(t, sz.tasks)
	want := nulls(sz.tasks)
	t.Run("embedded", func(t *testing.T) {
		start := time.Now()
		out, errOut, code, rss := run(t, 10*time.Minute, "map", "--function", "noop", "--iterdata-from", iter, "--quiet")
		if code != 0 || out != want {
			t.Fatalf("exit %d, %d bytes of output (want %d); stderr:\n%s", code, len(out), len(want), errOut)
		}
		t.Logf("%d tasks embedded: %v, peak RSS of the whole process (server, coordinator, workers, client) %d MB", sz.tasks, time.Since(start).Round(time.Millisecond), rss)
		if rss > sz.embeddedMB {
			t.Errorf("the embedded submit process peaked at %d MB, over the bound of %d MB", rss, sz.embeddedMB)
		}
	})
	for _, bk := range []string{"nats", "rabbitmq"} {
		t.Run(bk+"-restart", func(t *testing.T) { restartMidJob(t, bk, iter, want, sz) })
	}
}

// restartMidJob runs the job on bk (a nats-server of the test's own, or
// the shared RabbitMQ in a namespace of the test's own), SIGKILLs the
// coordinator a third of the way through and starts another.
func restartMidJob(t *testing.T, bk, iter, want string, sz millionSizes) {
	url := ""
	if bk == "nats" {
		url = privateNATS(t)
	} else {
		url = namespaced(t, testenv.Require(t, testenv.AMQPURL))
	}
	co := start(t, "coordinator", "--bus", url)
	waitOutput(t, co, "coordinator serving", 20*time.Second)
	start(t, "runtime", "--bus", url, "--prefetch", "256")
	began := time.Now()
	id := submitNoWait(t, "map", "--function", "noop", "--iterdata-from", iter, "--bus", url)
	waitProgress(t, url, id, sz.tasks/3)
	hwm1 := vmHWM(t, co)
	_ = co.cmd.Process.Kill()
	_ = co.cmd.Wait()
	co2 := start(t, "coordinator", "--bus", url)
	waitOutput(t, co2, "coordinator serving", 2*time.Minute)
	if !strings.Contains(co2.out.String(), "job taken up") {
		t.Fatalf("the new coordinator did not take the job up:\n%s", co2.out.String())
	}
	if out, errOut, code, _ := run(t, 10*time.Minute, "wait", id, "--bus", url); code != 0 {
		t.Fatalf("wait: exit %d %s %s", code, out, errOut)
	}
	took := time.Since(began)
	out, errOut, code, _ := run(t, 5*time.Minute, "result", id, "--bus", url)
	if code != 0 || out != want {
		t.Fatalf("result: exit %d, %d bytes (want %d); stderr:\n%s", code, len(out), len(want), errOut)
	}
	hwm2 := vmHWM(t, co2)
	t.Logf("%d tasks on %s with a coordinator restart: %v; coordinator peak RSS %d MB before the kill, %d MB after", sz.tasks, bk, took.Round(time.Millisecond), hwm1, hwm2)
	if hwm1 > sz.coordMB || hwm2 > sz.coordMB {
		t.Errorf("coordinator peak RSS %d MB / %d MB: want under %d MB", hwm1, hwm2, sz.coordMB)
	}
}
