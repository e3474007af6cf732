package trigger

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// webhookEnv is a runner on a real bus of each kind with a recording
// coordinator.
type webhookEnv struct {
	name string
	b    bus.Bus
	cfg  Config
}

func webhookBuses(t *testing.T, f func(t *testing.T, env webhookEnv)) {
	t.Run("nats", func(t *testing.T) {
		srv, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		b, err := srv.Connect(context.Background(), natsbus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		f(t, webhookEnv{name: "nats", b: b, cfg: Config{BusKind: BusNATS, Namespace: "skein",
			DialNATS: func(ctx context.Context, url string) (*nats.Conn, error) { return nats.Connect(srv.ClientURL()) }}})
	})
	t.Run("rabbitmq", func(t *testing.T) {
		raw := testenv.Require(t, testenv.AMQPURL)
		ns := fmt.Sprintf("wh%d", time.Now().UnixNano()%1e9)
		b, err := dial.Open(context.Background(), raw+"?ns="+ns, dial.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		f(t, webhookEnv{name: "rabbitmq", b: b, cfg: Config{BusKind: BusAMQP, Namespace: ns,
			DialAMQP: func(ctx context.Context, url string) (*amqp.Connection, error) { return amqp.Dial(raw) }}})
	})
}

const hookToken = "webhook-test-token-0123456789"

// hookRunner starts a runner on env, submitting to fc, with the trigger
// "wh" of webhook "uploads", and returns once the runner knows it, with
// the runner's log (shown when the test fails; the runner is closed when
// the test ends).
func hookRunner(ctx context.Context, t *testing.T, env webhookEnv, fc *fakeCoordinator) (*Runner, *testenv.Buffer, Def) {
	t.Helper()
	logs := &testenv.Buffer{}
	cfg := env.cfg
	cfg.Bus, cfg.Coordinator, cfg.ErrJobExists = env.b, fc, errExists
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := New(cfg)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	d := Def{Name: "wh", Source: Source{Webhook: "uploads", Format: "s3"}, Job: Template{Kind: wire.JobMap, Function: "wordcount"}}
	if _, err := Call(ctx, env.b, Request{Op: "create", Def: &d}); err != nil {
		t.Fatal(err)
	}
	for len(r.hooked("uploads")) == 0 {
		if ctx.Err() != nil {
			t.Fatal("the trigger is not known")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r, logs, d
}

// post sends body to the webhook at addr; auth is "bearer", "query" or
// "" (no token), with token.
func post(t *testing.T, method, url, auth, token string, body io.Reader) (int, string) {
	t.Helper()
	if auth == "query" {
		url += "?token=" + token
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth == "bearer" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The webhook refuses what it must (no token 401, a wrong one 403, an
// unknown webhook 404, not a POST 405, not JSON or not an S3 event 400,
// too large 413) and records none of it; an S3 test event is answered
// and not recorded; a notification is recorded and its job submitted,
// once however often it is posted.
func TestWebhookRequests(t *testing.T) {
	webhookBuses(t, func(t *testing.T, env webhookEnv) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fc := &fakeCoordinator{seen: map[string]bool{}, lease: true}
		r, logs, d := hookRunner(ctx, t, env, fc)
		if _, err := r.ServeWebhook(WebhookConfig{Addr: "10.1.2.3:0", Tokens: []string{hookToken}}); err == nil {
			t.Fatal("a webhook beyond loopback without Public: no error")
		}
		if _, err := r.ServeWebhook(WebhookConfig{Addr: "127.0.0.1:0", Tokens: []string{"short"}}); err == nil {
			t.Fatal("a token of 5 characters: no error")
		}
		addr, err := r.ServeWebhook(WebhookConfig{Addr: "127.0.0.1:0", Tokens: []string{"an-older-token-still-valid", hookToken}})
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + addr.String() + WebhookPath + "uploads"
		put := strings.Replace(s3Put, "books", "books-"+env.name, 1)
		big := `{"Records":[` + strings.Repeat(" ", DefaultWebhookMaxBody) + `]}`
		for _, c := range []struct {
			name, method, path, auth, token, body string
			chunked                               bool
			want                                  int
		}{
			{"no token", "POST", "", "", "", put, false, 401},
			{"wrong token", "POST", "", "bearer", hookToken + "x", put, false, 403},
			{"wrong token in the query", "POST", "", "query", "nope-nope-nope-nope", put, false, 403},
			{"unknown webhook", "POST", "other", "bearer", hookToken, put, false, 404},
			{"GET", "GET", "", "bearer", hookToken, "", false, 405},
			{"not JSON", "POST", "", "bearer", hookToken, "hello", false, 400},
			{"JSON, not an S3 event", "POST", "", "query", hookToken, `{"hello":"world"}`, false, 400},
			{"a list", "POST", "", "query", hookToken, `[1,2]`, false, 400},
			{"a record without a key", "POST", "", "bearer", hookToken, strings.Replace(put, `"key":"in/my+book.txt",`, "", 1), false, 400},
			{"too large", "POST", "", "bearer", hookToken, big, false, 413},
			{"too large, no length", "POST", "", "bearer", hookToken, big, true, 413},
			{"an S3 test event", "POST", "", "query", hookToken, `{"Service":"S3","Event":"s3:TestEvent","Time":"2026-11-30T10:00:00Z","Bucket":"b"}`, false, 200},
		} {
			u := url
			if c.path != "" {
				u = "http://" + addr.String() + WebhookPath + c.path
			}
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = io.MultiReader(body) // no length known: sent chunked
			}
			code, msg := post(t, c.method, u, c.auth, c.token, body)
			if code != c.want {
				t.Errorf("%s: status %d (%s), want %d", c.name, code, strings.TrimSpace(msg), c.want)
			}
			if strings.Contains(logs.String(), hookToken) || strings.Contains(logs.String(), "nope-nope") {
				t.Fatalf("%s: a token is in the log", c.name)
			}
		}
		// The notification, posted twice.
		for i := range 2 {
			if code, msg := post(t, "POST", url, "bearer", hookToken, bytes.NewReader([]byte(put))); code != 200 || !strings.Contains(msg, `"recorded":1`) {
				t.Fatalf("post %d: status %d %s", i, code, msg)
			}
		}
		ev, err := ParseS3([]byte(put))
		if err != nil {
			t.Fatal(err)
		}
		want := d.JobID([]string{ev.ID})
		// Records are read in order: once the notification's job is
		// submitted, a record of any request before it would have been.
		for {
			fc.mu.Lock()
			n := len(fc.specs)
			fc.mu.Unlock()
			if n > 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatal("the notification's job was not submitted")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// And the second post's record (AMQP keeps both) is settled
		// before the consumer is done.
		waitSettled(ctx, t, env, r)
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if len(fc.specs) != 1 || fc.specs[0].ID != want || string(fc.specs[0].Iterdata) != `["s3://books-`+env.name+`/in/my book.txt"]` {
			for _, s := range fc.specs {
				t.Logf("submitted %s %s", s.ID, s.Iterdata)
			}
			t.Fatalf("%d jobs submitted, want one, %s", len(fc.specs), want)
		}
	})
}

// waitSettled waits until the webhook trigger "wh" has no record left
// unacknowledged on the bus.
func waitSettled(ctx context.Context, t *testing.T, env webhookEnv, r *Runner) {
	t.Helper()
	for {
		left, err := hookBacklog(ctx, env, r)
		if err == nil && left == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("records left unacknowledged: %d %v", left, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hookBacklog(ctx context.Context, env webhookEnv, r *Runner) (int, error) {
	if env.cfg.BusKind == BusAMQP {
		conn, err := env.cfg.DialAMQP(ctx, "")
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return 0, err
		}
		q, err := ch.QueueDeclarePassive(webhookQueue(env.cfg.Namespace, "wh"), true, false, false, false, nil)
		if err != nil {
			return 0, err
		}
		// Messages ready (those delivered and not yet acknowledged are
		// not counted).
		return q.Messages, nil
	}
	nc, err := env.cfg.DialNATS(ctx, "")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	st, err := js.Stream(ctx, NotifyStream(env.cfg.Namespace))
	if err != nil {
		return 0, err
	}
	c, err := st.Consumer(ctx, consumerName("wh"))
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.NumAckPending) + int(info.NumPending), nil
}
