package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/stats"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// versityGW starts a versitygw of the test's own (posix backend in a
// temporary directory) with the given bucket notification flags, and
// returns its endpoint and the environment that points Skein's storage
// at it.
func versityGW(t *testing.T, eventArgs ...string) (endpoint string, env []string) {
	t.Helper()
	addr, env := s3Addr(t)
	startVersityGW(t, addr, eventArgs...)
	return "http://" + addr, env
}

// s3Addr picks versitygw's address, and returns it with the environment
// that points Skein's storage there.
func s3Addr(t *testing.T) (addr string, env []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	return addr, []string{storage.EnvEndpoint + "=http://" + addr, storage.EnvAccessKey + "=trigtest", storage.EnvSecretKey + "=trigtest-secret",
		storage.EnvPathStyle + "=true", storage.EnvRegion + "=" + storage.DefaultRegion}
}

// startVersityGW starts versitygw on addr.
func startVersityGW(t *testing.T, addr string, eventArgs ...string) {
	t.Helper()
	testenv.Require(t, testenv.S3Endpoint) // scripts/test.sh installed versitygw
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "versitygw")
	}
	access, secret := "trigtest", "trigtest-secret"
	args := append([]string{"--port", addr, "--quiet"}, eventArgs...)
	args = append(args, "posix", t.TempDir())
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+access, "ROOT_SECRET_KEY="+secret)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", out.String())
		}
	})
	endpoint := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw does not answer: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nsOf is the namespace of a bus URL.
func nsOf(t *testing.T, url string) string {
	t.Helper()
	_, ns, ok := strings.Cut(url, "ns=")
	if !ok {
		t.Fatalf("no namespace in %s", url)
	}
	return ns
}

// s3For returns a store on versitygw at endpoint and a new bucket.
func s3For(t *testing.T, endpoint string) (storage.Store, string) {
	t.Helper()
	c := storage.DefaultConfig()
	c.LocalRoot = t.TempDir()
	c.COS = storage.COSConfig{Endpoint: endpoint, Region: storage.DefaultRegion, PathStyle: true, AccessKey: "trigtest", SecretKey: storage.Secret("trigtest-secret")}
	r, err := storage.NewResolver(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, s, err := r.Parse("s3://placeholder")
	if err != nil {
		t.Fatal(err)
	}
	bucket := fmt.Sprintf("trig-%d", time.Now().UnixNano()%1e9)
	if err := s.(storage.BucketMaker).MakeBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	return s, bucket
}

// doneJobs follows the namespace's job end records from the stream's
// start and records the jobs ended done whose id starts with prefix. (Not
// the run.skein.job.done events: a coordinator killed between a job's end
// record and its event leaves the record alone.)
type doneJobs struct {
	mu   sync.Mutex
	ids  map[string]bool
	seen int // end records of those jobs, copies included
	last time.Time
}

func followDone(t *testing.T, url, prefix string) *doneJobs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := dial.Open(ctx, url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.Subscribe(ctx, wire.JobEndSubject("*"), bus.SubscribeOptions{From: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := &doneJobs{ids: map[string]bool{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m := range ch {
			job := strings.TrimSuffix(strings.TrimPrefix(m.Subject, "job."), ".end")
			if st, err := wire.DecodeEnd(m.Data, job); err != nil || st.State != wire.StateDone || !strings.HasPrefix(job, prefix) {
				continue
			}
			d.mu.Lock()
			d.ids[job] = true
			d.seen++
			d.last = time.Now()
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait(); b.Close() })
	return d
}

func (d *doneJobs) wait(t *testing.T, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d.mu.Lock()
		got := len(d.ids)
		d.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d trigger jobs done, want %d", within, got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for id := range d.ids {
		ids = append(ids, id)
	}
	return ids
}

// wordObjects makes n objects with distinct word counts; it returns
// their bodies and what `wc -w` says of each.
func wordObjects(t *testing.T, n int) ([][]byte, []int) {
	t.Helper()
	dir := t.TempDir()
	var bodies [][]byte
	var want []int
	for i := 0; i < n; i++ {
		var sb strings.Builder
		for w := 0; w < 3*i+5; w++ {
			fmt.Fprintf(&sb, "word%d", w)
			if w%7 == 6 {
				sb.WriteString("\n")
			} else {
				sb.WriteString(" ")
			}
		}
		sb.WriteString("\n")
		b := []byte(sb.String())
		f := filepath.Join(dir, fmt.Sprintf("o%d.txt", i))
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("wc", "-w", f).Output()
		if err != nil {
			t.Fatal(err)
		}
		c, err := strconv.Atoi(strings.Fields(string(out))[0])
		if err != nil {
			t.Fatal(err)
		}
		bodies, want = append(bodies, b), append(want, c)
	}
	return bodies, want
}

// jobCounts fetches each job's result (a wordcount map over one object:
// [n]) and returns the counts, sorted.
func jobCounts(t *testing.T, url string, ids []string) []int {
	t.Helper()
	var got []int
	for _, id := range ids {
		out, errOut, code := submit(t, "result", id, "--bus", url)
		if code != 0 {
			t.Fatalf("result %s: exit %d: %s", id, code, errOut)
		}
		var r []int
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r) != 1 {
			t.Fatalf("result %s: %q, want one count", id, out)
		}
		got = append(got, r[0])
	}
	slices.Sort(got)
	return got
}

func createTrigger(t *testing.T, url, def string) {
	t.Helper()
	if out, errOut, code := submit(t, "trigger", "create", "--bus", url, "--def", def); code != 0 {
		t.Fatalf("trigger create: exit %d %s %s", code, out, errOut)
	}
}

// TestTriggerBucketNotifications: versitygw publishes its bucket
// notifications to the test's broker; a trigger runs a wordcount over
// each uploaded object. 20 uploads make 20 jobs whose counts are `wc -w`
// of the objects, also when the coordinator is SIGKILLed halfway and
// started again (uploads go on meanwhile).
func TestTriggerBucketNotifications(t *testing.T) {
	cases := []struct {
		name string
		env  string
		kill bool
	}{
		{"nats", testenv.NATSURL, false},
		{"rabbitmq", testenv.AMQPURL, false},
		{"nats-coordinator-killed", testenv.NATSURL, true},
		{"rabbitmq-coordinator-killed", testenv.AMQPURL, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := testenv.Require(t, tc.env)
			url := namespaced(t, raw)
			name := fmt.Sprintf("wc%d", time.Now().UnixNano()%1e6)
			ns := nsOf(t, url)
			topic := ns + ".notify.s3"
			var gwArgs []string
			src := fmt.Sprintf(`{"nats":%q,"format":"s3"}`, topic)
			if strings.HasPrefix(raw, "amqp") {
				// Through the namespace's notify exchange, as a notifier
				// with deploy/rabbitmq's roles must.
				gwArgs = []string{"--event-rabbitmq-url", raw, "--event-rabbitmq-exchange", ns + ".notify", "--event-rabbitmq-routing-key", "s3"}
				src = fmt.Sprintf(`{"amqp":%q,"exchange":%q,"routing_key":"s3","format":"s3"}`, ns+".trigger-"+name, ns+".notify")
			} else {
				gwArgs = []string{"--event-nats-url", raw, "--event-nats-topic", topic}
			}
			addr, env := s3Addr(t)
			co := startEnv(t, env, "coordinator", "--bus", url, "--log-level", "debug")
			waitOutput(t, co, "coordinator serving", 20*time.Second)
			startEnv(t, env, "runtime", "--bus", url, "--slots", "2", "--lease", "2s")
			done := followDone(t, url, "tr-"+name+"-")
			createTrigger(t, url, fmt.Sprintf(`{"name":%q,"source":%s,"job":{"kind":"map","function":"wordcount"}}`, name, src))
			waitOutput(t, co, "trigger source open", 20*time.Second)
			// versitygw after the trigger: on RabbitMQ its exchange
			// must exist before versitygw's first notification.
			startVersityGW(t, addr, gwArgs...)
			s, bucket := s3For(t, "http://"+addr)
			bodies, want := wordObjects(t, 20)
			// Uploads in two waves of 10 at once. With tc.kill the
			// coordinator is SIGKILLed as soon as the first job of the
			// first wave is done, while the others are being submitted,
			// acknowledged and run; the second wave is uploaded while it
			// is down, and a new coordinator is started.
			wave := func(from int) {
				var wg sync.WaitGroup
				for i := from; i < from+10; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s3Put(t, s, bucket, fmt.Sprintf("in/obj-%02d.txt", i), bodies[i])
					}()
				}
				wg.Wait()
			}
			wave(0)
			if tc.kill {
				done.wait(t, 1, 30*time.Second)
				_ = co.cmd.Process.Kill()
				_ = co.cmd.Wait()
				t.Logf("coordinator killed with %d trigger jobs done", len(done.wait(t, 1, time.Second)))
			}
			wave(10)
			if tc.kill {
				co = startEnv(t, env, "coordinator", "--bus", url, "--log-level", "debug")
				waitOutput(t, co, "coordinator serving", 30*time.Second)
			}
			ids := done.wait(t, 20, 90*time.Second)
			slices.Sort(want)
			if got := jobCounts(t, url, ids); !slices.Equal(got, want) {
				t.Fatalf("word counts %v, want (wc -w) %v", got, want)
			}
			if ids = done.wait(t, 20, time.Second); len(ids) != 20 {
				t.Fatalf("%d trigger jobs, want 20 (one per upload): %v", len(ids), ids)
			}
		})
	}
}

// TestTriggerChain: a two-stage pipeline with no code outside Skein.
// Stage one counts the words of each uploaded object (a bucket
// notification trigger); stage two is a trigger on stage one's ends that
// sums every 20 of their results. Killed: the coordinator is SIGKILLed
// after the tenth upload's job is done and a new one started; the
// aggregate is still one job with the right total.
func TestTriggerChain(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "coordinator-killed"}[kill], func(t *testing.T) {
			raw := testenv.Require(t, testenv.NATSURL)
			url := namespaced(t, raw)
			stage1 := fmt.Sprintf("wc%d", time.Now().UnixNano()%1e6)
			stage2 := "total-" + stage1
			topic := nsOf(t, url) + ".notify.s3"
			endpoint, env := versityGW(t, "--event-nats-url", raw, "--event-nats-topic", topic)
			co := startEnv(t, env, "coordinator", "--bus", url, "--log-level", "debug")
			waitOutput(t, co, "coordinator serving", 20*time.Second)
			startEnv(t, env, "runtime", "--bus", url, "--slots", "2")
			firsts := followDone(t, url, "tr-"+stage1+"-")
			totals := followDone(t, url, "tr-"+stage2+"-")
			createTrigger(t, url, fmt.Sprintf(`{"name":%q,"source":{"nats":%q,"format":"s3"},"job":{"kind":"map","function":"wordcount"}}`, stage1, topic))
			createTrigger(t, url, fmt.Sprintf(`{"name":%q,"source":{"jobs":"trigger:%s"},"job":{"kind":"call","function":"sum","param":"values"},"batch":{"count":20}}`, stage2, stage1))
			out, errOut, code := submit(t, "trigger", "list", "--bus", url)
			if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, stage2) {
				t.Fatalf("trigger list: exit %d %q %s", code, out, errOut)
			}
			deadline := time.Now().Add(20 * time.Second)
			for strings.Count(co.out.String(), "trigger source open") < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("the triggers' sources did not open:\n%s", co.out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			s, bucket := s3For(t, endpoint)
			bodies, want := wordObjects(t, 20)
			total := 0
			for i, b := range bodies {
				s3Put(t, s, bucket, fmt.Sprintf("in/obj-%02d.txt", i), b)
				total += want[i]
				if kill && i == 9 {
					firsts.wait(t, 10, 30*time.Second)
					_ = co.cmd.Process.Kill()
					_ = co.cmd.Wait()
					co = startEnv(t, env, "coordinator", "--bus", url, "--log-level", "debug")
					waitOutput(t, co, "coordinator serving", 30*time.Second)
				}
			}
			ids := totals.wait(t, 1, 90*time.Second)
			out, errOut, code = submit(t, "result", ids[0], "--bus", url)
			if code != 0 || strings.TrimSpace(out) != strconv.Itoa(total) {
				t.Fatalf("the aggregate: exit %d %q, want %d; %s", code, out, total, errOut)
			}
			if _, errOut, code := submit(t, "trigger", "delete", stage2, "--bus", url); code != 0 {
				t.Fatalf("trigger delete: exit %d %s", code, errOut)
			}
			if _, _, code := submit(t, "trigger", "delete", "no-such-trigger", "--bus", url); code != 2 {
				t.Fatalf("deleting an unknown trigger: exit %d, want 2", code)
			}
			if n := len(totals.wait(t, 1, time.Second)); n != 1 {
				t.Fatalf("%d aggregate jobs, want 1", n)
			}
		})
	}
}

// TestTriggerFromConfigFile: a trigger in the coordinator's config file
// is recorded as it starts and listed; each JSON message published on
// its subject runs a call of add (the message as x, extra_params y); a
// message that is not JSON is dropped and reported.
func TestTriggerFromConfigFile(t *testing.T) {
	raw := testenv.Require(t, testenv.NATSURL)
	url := namespaced(t, raw)
	ns := nsOf(t, url)
	subject := ns + ".notify.numbers"
	cfg := filepath.Join(t.TempDir(), "skein.yaml")
	conf := fmt.Sprintf(`triggers:
  - name: plus1
    source: {nats: %s}
    job: {kind: call, function: add, param: x, extra_params: {y: 1}}
`, subject)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	co := start(t, "coordinator", "--bus", url, "--config", cfg, "--log-level", "debug")
	waitOutput(t, co, "trigger source open", 20*time.Second)
	start(t, "runtime", "--bus", url, "--slots", "2")
	out, errOut, code := submit(t, "trigger", "list", "--bus", url)
	if code != 0 || !strings.Contains(out, `"name":"plus1"`) || !strings.Contains(out, `"extra_params":{"y":1}`) {
		t.Fatalf("trigger list: exit %d %q %s", code, out, errOut)
	}
	done := followDone(t, url, "tr-plus1-")
	nc, err := nats.Connect(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pub := func(id, body string) {
		m := nats.NewMsg(subject)
		if id != "" {
			m.Header.Set("Nats-Msg-Id", id)
		}
		m.Data = []byte(body)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	pub("", "not json")
	for i := range 5 {
		pub(fmt.Sprintf("n%d", i), strconv.Itoa(10*i))
	}
	ids := done.wait(t, 5, 60*time.Second)
	var got []int
	for _, id := range ids {
		out, errOut, code := submit(t, "result", id, "--bus", url)
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if code != 0 || err != nil {
			t.Fatalf("result %s: exit %d %q %s", id, code, out, errOut)
		}
		got = append(got, n)
	}
	slices.Sort(got)
	if want := []int{1, 11, 21, 31, 41}; !slices.Equal(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	if !strings.Contains(co.out.String(), "dropping a message the trigger cannot read") {
		t.Errorf("the message that is not JSON was not reported:\n%s", co.out.String())
	}
}

// TestTriggerLatency measures upload-to-result latency through a bucket
// notification trigger, on NATS and on RabbitMQ: 100 small objects
// uploaded one at a time, each timed from the start of its upload to its
// job's end record on the bus (docs/benchmarks.md). It fails if the p99
// exceeds 5s.
func TestTriggerLatency(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			raw := testenv.Require(t, bk.env)
			url := namespaced(t, raw)
			ns := nsOf(t, url)
			name := fmt.Sprintf("lat%d", time.Now().UnixNano()%1e6)
			gwArgs := []string{"--event-nats-url", raw, "--event-nats-topic", ns + ".notify.s3"}
			src := fmt.Sprintf(`{"nats":%q,"format":"s3"}`, ns+".notify.s3")
			if bk.name == "rabbitmq" {
				gwArgs = []string{"--event-rabbitmq-url", raw, "--event-rabbitmq-exchange", ns + ".notify", "--event-rabbitmq-routing-key", "s3"}
				src = fmt.Sprintf(`{"amqp":%q,"exchange":%q,"routing_key":"s3","format":"s3"}`, ns+".trigger-"+name, ns+".notify")
			}
			addr, env := s3Addr(t)
			co := startEnv(t, env, "coordinator", "--bus", url)
			waitOutput(t, co, "coordinator serving", 20*time.Second)
			startEnv(t, env, "runtime", "--bus", url, "--slots", "2")
			done := followDone(t, url, "tr-"+name+"-")
			createTrigger(t, url, fmt.Sprintf(`{"name":%q,"source":%s,"job":{"kind":"map","function":"wordcount"}}`, name, src))
			waitOutput(t, co, "trigger source open", 20*time.Second)
			startVersityGW(t, addr, gwArgs...)
			s, bucket := s3For(t, "http://"+addr)
			const n = 100
			var lat []time.Duration
			for i := range n {
				t0 := time.Now()
				s3Put(t, s, bucket, fmt.Sprintf("lat/%03d.txt", i), []byte("one two three\n"))
				done.wait(t, i+1, 30*time.Second)
				done.mu.Lock()
				lat = append(lat, done.last.Sub(t0))
				done.mu.Unlock()
			}
			p50, p99 := stats.Percentile(lat, 50), stats.Percentile(lat, 99)
			t.Logf("%s: upload to result over %d uploads: p50 %v, p99 %v, max %v", bk.name, n, p50, p99, slices.Max(lat))
			if p99 > 5*time.Second {
				t.Errorf("p99 %v: over 5s", p99)
			}
		})
	}
}
