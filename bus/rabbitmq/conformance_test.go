package rabbitmq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/bustest"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
)

// testLogger routes slog records to t.Log and keeps them for assertions.
type testLogger struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *testLogger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func connect(t testing.TB, url string, opts rabbitmq.Options) (*rabbitmq.Bus, *testLogger) {
	t.Helper()
	lg := &testLogger{t: t}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := rabbitmq.Connect(ctx, url, opts)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, lg
}

// ctl runs "<line> <cmd>" (a broker's stop-broker / start-broker).
func ctl(t *testing.T, line, cmd string) func() error {
	return func() error {
		out, err := exec.Command("sh", "-c", line+" "+cmd).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", line, cmd, err, out)
		}
		t.Logf("%s: %s", cmd, strings.TrimSpace(string(out)))
		return nil
	}
}

func TestConformance(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	restart := testenv.CI() || !testing.Short()
	var line string
	if restart {
		// The suite stops and starts its broker: a node of its own, so
		// that other packages' tests on the shared node go on.
		url, line = testenv.PrivateRabbitMQ(t)
	}
	f := bustest.Features{
		DeadLetters: func(ctx context.Context, b bus.Bus, queue string) ([]bustest.DeadLetter, error) {
			dl, err := b.(*rabbitmq.Bus).DeadLetters(ctx, queue, 100)
			out := make([]bustest.DeadLetter, len(dl))
			for i, d := range dl {
				out[i] = bustest.DeadLetter{Data: d.Message.Data, Reason: d.Reason}
			}
			return out, err
		},
		Slow:            1,
		ShrinkHandsBack: true,
	}
	if restart {
		f.StopBroker, f.StartBroker = ctl(t, line, "stop-broker"), ctl(t, line, "start-broker")
	}
	bustest.Run(t, f, func(t *testing.T) bus.Bus {
		b, _ := connect(t, url, rabbitmq.Options{MaxMessageSize: 1 << 20})
		return b
	})
}

// A malformed task is terminated by its consumer: it lands in the
// dead-letter queue with the reason, is logged, and the queue moves on.
func TestMalformedTaskGoesToDeadLetters(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	b, logs := connect(t, url, rabbitmq.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := "malformed." + fmt.Sprint(time.Now().UnixNano())
	err := b.Enqueue(ctx, q,
		bus.Message{Data: []byte{0xc1, 0xff, 0x00}, Header: map[string]string{"origin": "fuzz"}},
		bus.Message{Data: []byte("good 1")},
		bus.Message{Data: []byte("good 2")})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := b.Consume(ctx, q, bus.QueueOptions{Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	var good []string
	for len(good) < 2 {
		select {
		case d := <-ds:
			if !bytes.HasPrefix(d.Message().Data, []byte("good")) {
				if err := d.Term(ctx, "malformed task: not a msgpack envelope"); err != nil {
					t.Fatal(err)
				}
				continue
			}
			good = append(good, string(d.Message().Data))
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("queue blocked behind the malformed task: got %v", good)
		}
	}
	dl, err := b.DeadLetters(ctx, q, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 {
		t.Fatalf("dead letters = %+v, want one", dl)
	}
	d := dl[0]
	if !bytes.Equal(d.Message.Data, []byte{0xc1, 0xff, 0x00}) || d.Reason != "malformed task: not a msgpack envelope" ||
		d.Queue != q || d.Attempt != 1 || d.Message.Header["origin"] != "fuzz" || time.Since(d.At) > time.Minute {
		t.Errorf("dead letter = %+v", d)
	}
	// Inspection does not consume.
	if again, _ := b.DeadLetters(ctx, q, 10); len(again) != 1 {
		t.Errorf("second inspection found %d dead letters, want 1", len(again))
	}
	if !strings.Contains(logs.String(), "malformed task: not a msgpack envelope") {
		t.Errorf("the reason was not logged; logs:\n%s", logs)
	}
	if n, err := b.PurgeDeadLetters(ctx, q); err != nil || n != 1 {
		t.Errorf("purge dead letters = %d, %v; want 1", n, err)
	}
}

// The broker's delivery limit is a backstop when consumers keep dying.
func TestDeliveryLimitBackstop(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	b, _ := connect(t, url, rabbitmq.Options{DeliveryLimit: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := "backstop." + fmt.Sprint(time.Now().UnixNano())
	if err := b.Enqueue(ctx, q, bus.Message{Data: []byte("crashes its consumer")}); err != nil {
		t.Fatal(err)
	}
	// Three consumers die holding it (their bus closes unacked).
	for i := range 3 {
		c, _ := connect(t, url, rabbitmq.Options{DeliveryLimit: 2})
		ds, err := c.Consume(ctx, q, bus.QueueOptions{MaxAttempts: 100})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-ds:
			if d.Attempt() != i+1 {
				t.Errorf("attempt = %d, want %d", d.Attempt(), i+1)
			}
		case <-ctx.Done():
			t.Fatalf("delivery %d never came", i+1)
		}
		_ = c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		dl, err := b.DeadLetters(ctx, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) == 1 {
			if dl[0].Reason != "delivery_limit" {
				t.Errorf("reason = %q, want delivery_limit", dl[0].Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not dead-letter past its delivery limit")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	_, err := rabbitmq.Connect(context.Background(), "amqp://u:secretpw@127.0.0.1:1/", rabbitmq.Options{DialTimeout: 2 * time.Second})
	if !errors.Is(err, bus.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), "secretpw") {
		t.Errorf("error leaks the password: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s to fail", el)
	}
	// A black-holed address times out within DialTimeout.
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = rabbitmq.Connect(ctx, "amqp://10.255.255.1:5672/", rabbitmq.Options{DialTimeout: time.Second})
	if !errors.Is(err, bus.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %s to fail, want about DialTimeout", el)
	}
}

func TestBadCredentials(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	bad := strings.Replace(url, "@", "x@", 1)
	_, err := rabbitmq.Connect(context.Background(), bad, rabbitmq.Options{})
	// Wrong credentials make the bus unusable like an unreachable broker
	// (programs exit 5), and say why.
	if !errors.Is(err, bus.ErrUnreachable) || !strings.Contains(err.Error(), "access refused") {
		t.Fatalf("err = %v, want access refused wrapping ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), strings.SplitN(strings.TrimPrefix(bad, "amqp://"), "@", 2)[0]) {
		t.Errorf("error leaks the credentials: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	o := rabbitmq.DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	o.QueueType = "lazy"
	o.MaxMessageSize = -1
	o.Prefix = "a..b"
	o.Username = "only-user"
	err := o.Validate()
	for _, field := range []string{"QueueType", "MaxMessageSize", "Prefix", "Username"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
	}
	if _, err := rabbitmq.Connect(context.Background(), "nats://x", rabbitmq.Options{}); err == nil {
		t.Errorf("Connect accepted a nats:// URL")
	}
	if got := rabbitmq.Redact("amqp://user:pw@host:5672/v"); strings.Contains(got, "pw@") {
		t.Errorf("Redact = %q", got)
	}
}

// TestConformanceCluster runs the suite against the 3-node RabbitMQ
// cluster of scripts/services/rabbitmq-cluster.sh (quorum work queues,
// the event stream replicated on the three nodes). Every bus is given
// the three URLs. Its broker restart SIGKILLs the node that most of the
// restart test's buses are connected to, mid-run, and starts it again:
// those buses move to the next node of their list.
func TestConformanceCluster(t *testing.T) {
	c := testenv.AMQPClusterEnv(t)
	var (
		mu     sync.Mutex
		recent []*rabbitmq.Bus // the last buses made, newest last
		killed int
	)
	f := bustest.Features{
		DeadLetters: func(ctx context.Context, b bus.Bus, queue string) ([]bustest.DeadLetter, error) {
			dl, err := b.(*rabbitmq.Bus).DeadLetters(ctx, queue, 100)
			out := make([]bustest.DeadLetter, len(dl))
			for i, d := range dl {
				out[i] = bustest.DeadLetter{Data: d.Message.Data, Reason: d.Reason}
			}
			return out, err
		},
		StopBroker: func() error {
			mu.Lock()
			var urls []string
			for _, b := range recent[max(len(recent)-3, 0):] {
				urls = append(urls, b.ConnectedURL())
			}
			mu.Unlock()
			killed = busiestNode(t, c, urls)
			_, err := c.Ctl("kill-node", strconv.Itoa(killed))
			return err
		},
		StartBroker: func() error {
			_, err := c.Ctl("start-node", strconv.Itoa(killed))
			return err
		},
		Slow:            2,
		ShrinkHandsBack: true,
	}
	t.Cleanup(func() {
		if killed != 0 {
			if _, err := c.Ctl("start-node", strconv.Itoa(killed)); err != nil {
				t.Errorf("start node %d: %v", killed, err)
			}
		}
	})
	bustest.Run(t, f, func(t *testing.T) bus.Bus {
		b, _ := connect(t, c.List(), rabbitmq.Options{MaxMessageSize: 1 << 20, QueueType: rabbitmq.QueueTypeQuorum})
		mu.Lock()
		recent = append(recent, b)
		mu.Unlock()
		return b
	})
	// The suite ran on quorum queues and the event stream.
	out, err := c.Ctl("ctl", "1", "list_queues", "name", "type", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	var qs []struct{ Name, Type string }
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		t.Fatalf("list_queues: %v\n%s", err, out)
	}
	types := map[string]int{}
	for _, q := range qs {
		switch {
		case q.Name == "skein.events":
			types["events "+q.Type]++
		case strings.HasPrefix(q.Name, "bustest-") && !strings.Contains(q.Name, ".delay."):
			types["work "+q.Type]++
		}
	}
	if types["events stream"] != 1 || types["work quorum"] == 0 || types["work classic"] != 0 {
		t.Errorf("queue types on the cluster: %v; want the events stream and quorum work queues", types)
	}
}

// busiestNode is the node (1 to 3) that most of urls (connected URLs,
// redacted) name.
func busiestNode(t *testing.T, c *testenv.Cluster, urls []string) int {
	count := map[int]int{}
	best := 1
	for _, u := range urls {
		for i, node := range c.URLs {
			if rabbitmq.Redact(node) == u {
				count[i+1]++
				if count[i+1] > count[best] {
					best = i + 1
				}
			}
		}
	}
	t.Logf("buses on nodes %v: killing node %d", count, best)
	return best
}

// A list of URLs: the bus connects to a node that answers, whichever
// comes first in the list, and names it.
func TestConnectList(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	dead := "amqp://u:p@127.0.0.1:1/"
	for i := 0; i < 4; i++ { // the first node tried is random
		b, _ := connect(t, dead+" , "+url, rabbitmq.Options{DialTimeout: time.Second})
		if got, want := b.ConnectedURL(), rabbitmq.Redact(url); got != want {
			t.Errorf("connected to %s, want %s", got, want)
		}
		_ = b.Close()
	}
	_, err := rabbitmq.Connect(context.Background(), dead+","+strings.Replace(dead, ":1/", ":2/", 1), rabbitmq.Options{DialTimeout: time.Second})
	if !errors.Is(err, bus.ErrUnreachable) || !strings.Contains(err.Error(), "other 1 nodes") {
		t.Errorf("no node answers: err = %v, want ErrUnreachable naming the other node", err)
	}
	_, err = rabbitmq.Connect(context.Background(), "amqp://h1:5672/a,amqp://h2:5672/b", rabbitmq.Options{})
	if err == nil || !strings.Contains(err.Error(), "different virtual hosts") {
		t.Errorf("two vhosts: err = %v", err)
	}
}
