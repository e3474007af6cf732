package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
	"github.com/skeinrun/skein/internal/natstest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/dashboard"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

const token = "0123456789abcdef-test-token"

// stack is an in-process NATS server, a coordinator, one real runtime
// and the dashboard on an HTTP server.
type stack struct {
	c   *coordinator.Coordinator
	cl  *client.Client
	url string
}

func newStack(t *testing.T, auth dashboard.Auth, slots int) *stack {
	t.Helper()
	srv := natstest.Server(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cb := natstest.Connect(t, srv, natsbus.Options{Name: "coordinator", Logger: log})
	rb := natstest.Connect(t, srv, natsbus.Options{Name: "runtime", Logger: log})
	s := &stack{}
	var err error
	if s.c, err = coordinator.New(cb, coordinator.Config{Logger: log}); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	if err := s.c.Serve(rctx); err != nil {
		t.Fatal(err)
	}
	// step sleeps 60-140 ms; its first call with x = 7 panics (the
	// runtime sends the Go stack; the retry succeeds).
	var mu sync.Mutex
	calls := map[int]int{}
	reg := fn.Builtins()
	reg.Register(fn.Spec{Name: "step", Params: []string{"x"}, Run: func(ctx context.Context, a *fn.Args) (any, error) {
		var x int
		if err := a.Get("x", &x); err != nil {
			return nil, err
		}
		mu.Lock()
		calls[x]++
		n := calls[x]
		mu.Unlock()
		select {
		case <-time.After(time.Duration(60+x%5*20) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if x == 7 && n == 1 {
			explode(x)
		}
		return x, nil
	}})
	rt, err := runtime.New(rb, runtime.Config{Slots: slots, Registry: reg, WorkerID: "rt-dash", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done; s.c.Close() })

	d, err := dashboard.New(dashboard.Config{Coordinator: s.c, Events: cb, Auth: auth, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	t.Cleanup(hs.Close)
	s.url = hs.URL
	s.cl = client.New(cb)
	return s
}

//go:noinline
func explode(x int) { panic(fmt.Sprintf("boom at %d", x)) }

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func iterdata(n int) wire.Value {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	b, _ := json.Marshal(xs)
	return b
}

func (s *stack) submit(t *testing.T, n int) string {
	t.Helper()
	id, err := s.cl.Submit(context.Background(), &wire.JobSpec{Kind: wire.JobMap, Function: "step", Iterdata: iterdata(n), Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEventStream reads a job's server-sent events to their end: every
// task's done event, the failed first attempt of task 7 with the Go
// stack its runtime sent, and the final status.
func TestEventStream(t *testing.T) {
	s := newStack(t, dashboard.Auth{}, 8)
	const n = 60
	id := s.submit(t, n)
	var err error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/api/jobs/"+id+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	done := map[int]bool{}
	var failed []dashboard.EventView
	var end struct {
		Status dashboard.JobView `json:"status"`
		Note   string            `json:"note"`
	}
	statuses := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		switch event {
		case "events":
			var evs []dashboard.EventView
			if err := json.Unmarshal([]byte(data), &evs); err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				switch ev.Type {
				case wire.EventDone:
					done[ev.Task] = true
					if ev.Finished < ev.Started || ev.Started <= 0 {
						t.Errorf("event times %+v", ev)
					}
				case wire.EventFailed:
					failed = append(failed, ev)
				}
			}
		case "status":
			statuses++
		case "end":
			if err := json.Unmarshal([]byte(data), &end); err != nil {
				t.Fatal(err)
			}
		}
	}
	if end.Status.State != wire.StateDone || end.Note != "" {
		t.Fatalf("end %+v (scan: %v)", end, sc.Err())
	}
	if len(done) != n || statuses < 2 {
		t.Errorf("%d tasks done in the stream, %d statuses; want %d tasks and statuses while it ran", len(done), statuses, n)
	}
	if len(failed) != 1 || failed[0].Task != 7 || failed[0].Attempt != 1 || failed[0].Error == nil ||
		failed[0].Error.Kind != wire.ErrPanic || !strings.Contains(failed[0].Error.Message, "boom at 7") || !strings.Contains(failed[0].Error.Stack, "explode") {
		t.Errorf("failed events %+v, want task 7's panic with its stack", failed)
	}
	if end.Status.Done != n || end.Status.Retried != 1 {
		t.Errorf("final status %+v", end.Status)
	}
	if r, _ := http.Get(s.url + "/api/jobs/nosuchjob/events"); r == nil || r.StatusCode != 404 {
		t.Errorf("events of an unknown job: %v", r)
	}

	// A map-reduce job: the reducer's done event carries the times its
	// inputs arrived.
	id, err = s.cl.Submit(context.Background(), &wire.JobSpec{Kind: wire.JobMapReduce, Function: "step", Iterdata: iterdata(20), ReduceFunction: "sum", Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	evs, endSt := readStream(t, s.url+"/api/jobs/"+id+"/events")
	arrivals := 0
	for _, ev := range evs {
		if ev.Kind == wire.TaskReduce && ev.Type == wire.EventDone {
			arrivals += len(ev.Arrivals)
			for _, a := range ev.Arrivals {
				if a <= 0 || a > float64(endSt.ElapsedMS)+1 {
					t.Errorf("arrival at %v ms of a job that lasted %d ms", a, endSt.ElapsedMS)
				}
			}
		}
	}
	if endSt.State != wire.StateDone || arrivals != 20 {
		t.Errorf("map-reduce job ended %s with %d reducer arrivals, want done and 20", endSt.State, arrivals)
	}
}

// readStream reads a job's event stream to its end.
func readStream(t *testing.T, url string) ([]dashboard.EventView, dashboard.JobView) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all []dashboard.EventView
	var end struct {
		Status dashboard.JobView `json:"status"`
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		switch event {
		case "events":
			var evs []dashboard.EventView
			if err := json.Unmarshal([]byte(data), &evs); err != nil {
				t.Fatal(err)
			}
			all = append(all, evs...)
		case "end":
			if err := json.Unmarshal([]byte(data), &end); err != nil {
				t.Fatal(err)
			}
		}
	}
	return all, end.Status
}

// TestRights: reading is open unless ReadNeedsAuth; cancelling needs the
// token (header or cookie) or an allowed proxy user, and the
// X-Skein-Request header.
func TestRights(t *testing.T) {
	s := newStack(t, dashboard.Auth{Token: token, UserHeader: "X-Forwarded-User", CancelUsers: []string{"alice"}, ReadNeedsAuth: true}, 2)
	id := s.submit(t, 400)
	do := func(method, path string, hdr ...string) int {
		req, _ := http.NewRequest(method, s.url+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cancelPath := "/api/jobs/" + id + "/cancel"
	for _, c := range []struct {
		what         string
		method, path string
		hdr          []string
		want         int
	}{
		{"anonymous read", "GET", "/api/jobs", nil, 401},
		{"anonymous page", "GET", "/", nil, 401},
		{"static asset without credentials", "GET", "/static/app.js", nil, 200},
		{"wrong token", "GET", "/api/jobs", []string{"Authorization", "Bearer nope"}, 401},
		{"proxy user reads", "GET", "/api/jobs", []string{"X-Forwarded-User", "bob"}, 200},
		{"proxy user may not cancel", "POST", cancelPath, []string{"X-Forwarded-User", "bob", "X-Skein-Request", "1"}, 403},
		{"token without the request header", "POST", cancelPath, []string{"Authorization", "Bearer " + token}, 403},
		{"cancel by GET", "GET", cancelPath, []string{"Authorization", "Bearer " + token}, 405},
		{"allowed proxy user cancels", "POST", cancelPath, []string{"X-Forwarded-User", "alice", "X-Skein-Request", "1"}, 200},
		{"unknown job", "POST", "/api/jobs/nosuch/cancel", []string{"Authorization", "Bearer " + token, "X-Skein-Request", "1"}, 404},
	} {
		if got := do(c.method, c.path, c.hdr...); got != c.want {
			t.Errorf("%s: %s %s = %d, want %d", c.what, c.method, c.path, got, c.want)
		}
	}
	st, err := s.c.Status(id)
	if err != nil || st.State != wire.StateCancelled {
		t.Errorf("after the cancel the job is %v (%v)", st.State, err)
	}
	// The login page sets the cookie that the page then carries.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	if r, err := hc.Get(s.url + "/login?token=wrong"); err != nil || r.StatusCode != 401 {
		t.Errorf("login with a wrong token: %v %v", r, err)
	}
	r, err := hc.Get(s.url + "/login?token=" + token)
	if err != nil || r.StatusCode != 200 || r.Request.URL.Path != "/" {
		t.Fatalf("login: %v %v", r, err)
	}
	r, err = hc.Get(s.url + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	var me struct{ Read, Cancel bool }
	_ = json.NewDecoder(r.Body).Decode(&me)
	r.Body.Close()
	if !me.Read || !me.Cancel {
		t.Errorf("after login: %+v", me)
	}
}
