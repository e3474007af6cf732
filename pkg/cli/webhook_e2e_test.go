package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/internal/testpki"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/trigger"
	"github.com/skeinrun/skein/pkg/wire"
)

// gate is a TCP proxy to target whose traffic can be held: while it is
// closed, bytes read on either side wait before they are passed on. The
// test puts it between a coordinator and versitygw, so that the
// coordinator cannot list the objects a trigger's job is made of (its
// submission waits) while uploads and their notifications go on.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	wg     sync.WaitGroup
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	g.cond = sync.NewCond(&g.mu)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.wg.Add(1)
			go func() { defer g.wg.Done(); g.serve(c) }()
		}
	}()
	t.Cleanup(func() { g.hold(false); ln.Close(); g.wg.Wait() })
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

// hold closes (true) or opens the gate.
func (g *gate) hold(closed bool) {
	g.mu.Lock()
	g.closed = closed
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *gate) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pass := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				g.mu.Lock()
				for g.closed {
					g.cond.Wait()
				}
				g.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pass(up, c)
	go pass(c, up)
	<-done
}

// envWith returns env with the storage endpoint replaced by endpoint.
func envWith(env []string, endpoint string) []string {
	out := slices.Clone(env)
	for i, e := range out {
		if strings.HasPrefix(e, storage.EnvEndpoint+"=") {
			out[i] = storage.EnvEndpoint + "=" + endpoint
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// hookPost posts body to url (with token as a bearer token unless
// empty) and returns the status.
func hookPost(t *testing.T, url, token, body string) int {
	t.Helper()
	return hookPostWith(t, http.DefaultClient, url, token, body)
}

// hookPostWith is hookPost with client.
func hookPostWith(t *testing.T, client *http.Client, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// specCount reads the namespace's job log to its present end and counts
// the jobs whose id starts with prefix.
func specCount(t *testing.T, url, prefix string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := dial.Open(ctx, url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The mark the trigger runners publish and skip as they start.
	mark, err := b.PublishSeq(ctx, trigger.TriggerSubject("~mark"), bus.Message{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.Subscribe(ctx, wire.JobSpecSubject("*"), bus.SubscribeOptions{From: 1, To: mark})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for m := range ch {
		if job := strings.TrimSuffix(strings.TrimPrefix(m.Subject, "job."), ".spec"); strings.HasPrefix(job, prefix) {
			ids[job] = true
		}
	}
	if ctx.Err() != nil {
		t.Fatal("reading the job log: ", ctx.Err())
	}
	return len(ids)
}

// TestTriggerWebhook: versitygw sends its bucket notifications by
// webhook to the coordinator's listener; a trigger runs a wordcount over
// each uploaded object. 20 uploads make 20 jobs whose counts are `wc -w`
// of the objects, on NATS and on RabbitMQ, with a second coordinator
// sharing the records. Bad requests (no token, a wrong one, not JSON, not
// an S3 event, too large) are refused and start nothing.
//
// Killed: versitygw sends each notification once and never again
// (versitygw 1.8 ignores the answer and a failed connection), so a
// notification sent while no coordinator listens is lost on its side;
// what Skein controls starts with the answer, which comes once the event
// is recorded on the bus. The coordinator is SIGKILLed twice: once when
// the first wave's ten events are all recorded and the first of their
// jobs is done (the others somewhere between record, submission and
// acknowledgement), and once while the second wave's ten events are
// recorded and none of their jobs can be submitted (the coordinator's
// way to the S3 server, where it lists the objects a job is made of, is
// held by a gate). Each time a new coordinator starts; every upload
// still makes exactly one job.
func TestTriggerWebhook(t *testing.T) {
	cases := []struct {
		name string
		env  string
		kill bool
		tls  bool // the listener speaks HTTPS; versitygw trusts its CA
	}{
		{"nats", testenv.NATSURL, false, false},
		{"rabbitmq", testenv.AMQPURL, false, false},
		{"nats-tls", testenv.NATSURL, false, true},
		{"nats-coordinator-killed", testenv.NATSURL, true, false},
		{"rabbitmq-coordinator-killed", testenv.AMQPURL, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := testenv.Require(t, tc.env)
			url := namespaced(t, raw)
			name := fmt.Sprintf("wh%d", time.Now().UnixNano()%1e6)
			const token = "webhook-e2e-token-0123456789"
			s3, env := s3Addr(t)
			g := newGate(t, s3)
			hookAddr := freeAddr(t)
			coEnv := append(envWith(env, "http://"+g.addr()), "SKEIN_WEBHOOK_TOKEN="+token)
			coArgs := []string{"--bus", url, "--log-level", "debug", "--webhook-listen", hookAddr}
			scheme, client := "http", http.DefaultClient
			if tc.tls {
				pki := testpki.New(t)
				coArgs = append(coArgs, "--webhook-tls-cert", pki.ServerCert, "--webhook-tls-key", pki.ServerKey)
				ca, err := os.ReadFile(pki.CA)
				if err != nil {
					t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(ca)
				scheme, client = "https", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
				t.Setenv("SSL_CERT_FILE", pki.CA) // versitygw's roots
			}
			startCo := func() *proc {
				co := startEnv(t, coEnv, "coordinator", coArgs...)
				waitOutput(t, co, "coordinator serving", 30*time.Second)
				waitOutput(t, co, "webhook listening", time.Second)
				return co
			}
			co := startCo()
			if !tc.kill {
				// A second coordinator, without a listener: the records
				// are shared by the trigger's consumers.
				co2 := startEnv(t, coEnv, "coordinator", "--bus", url, "--log-level", "debug")
				waitOutput(t, co2, "coordinator serving", 30*time.Second)
			}
			startEnv(t, env, "runtime", "--bus", url, "--slots", "2", "--lease", "2s")
			done := followDone(t, url, "tr-"+name+"-")
			createTrigger(t, url, fmt.Sprintf(`{"name":%q,"source":{"webhook":%q,"format":"s3"},"job":{"kind":"map","function":"wordcount"}}`, name, name))
			waitOutput(t, co, "trigger source open", 20*time.Second)
			hook := scheme + "://" + hookAddr + "/webhook/" + name
			// versitygw after the listener: it posts a test event as it
			// starts, and exits if the connection is refused.
			startVersityGW(t, s3, "--event-webhook-url", hook+"?token="+token)
			s, bucket := s3For(t, "http://"+s3)
			bodies, want := wordObjects(t, 20)
			if !tc.kill {
				put := `{"Records":[{"eventName":"s3:ObjectCreated:Put","eventTime":"2026-11-30T10:00:00Z","s3":{"bucket":{"name":"` + bucket + `"},"object":{"key":"in/obj-00.txt","eTag":"x","sequencer":"1"}}}]}`
				for _, c := range []struct {
					what, token, body string
					want              int
				}{
					{"no token", "", put, 401},
					{"a wrong token", token + "x", put, 403},
					{"not JSON", token, "in/obj-00.txt", 400},
					{"not an S3 event", token, `{"key":"in/obj-00.txt"}`, 400},
					{"too large", token, `{"Records":[` + strings.Repeat(" ", 300<<10) + `]}`, 413},
				} {
					if code := hookPostWith(t, client, hook, c.token, c.body); code != c.want {
						t.Errorf("%s: status %d, want %d", c.what, code, c.want)
					}
				}
				if strings.Contains(co.out.String(), token) {
					t.Fatal("the token is in the coordinator's log")
				}
				if tc.tls {
					if code := hookPost(t, "http://"+hookAddr+"/webhook/"+name, token, put); code == http.StatusOK {
						t.Fatal("a plain HTTP request to the TLS listener was answered 200")
					}
				}
			}
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
			recorded := func(p *proc, n int) {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for strings.Count(p.out.String(), "webhook event recorded") < n {
					if time.Now().After(deadline) {
						t.Fatalf("%d webhook events recorded, want %d", strings.Count(p.out.String(), "webhook event recorded"), n)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			kill := func() {
				_ = co.cmd.Process.Kill()
				_ = co.cmd.Wait()
			}
			wave(0)
			if tc.kill {
				recorded(co, 10)
				done.wait(t, 1, 30*time.Second)
				kill()
				t.Logf("coordinator killed with 10 events recorded, %d of their jobs done", len(done.wait(t, 1, time.Second)))
				co = startCo()
				done.wait(t, 10, 60*time.Second)
				g.hold(true)
			}
			wave(10)
			if tc.kill {
				recorded(co, 10)
				if n := len(done.wait(t, 10, time.Second)); n != 10 {
					t.Fatalf("%d jobs done while their objects cannot be listed, want 10", n)
				}
				if n := specCount(t, url, "tr-"+name+"-"); n != 10 {
					t.Fatalf("%d trigger jobs on the job log while the second wave's objects cannot be listed, want the first wave's 10", n)
				}
				kill()
				g.hold(false)
				co = startCo()
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
