package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/chaos"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// Settings, from the environment (make chaos sets them):
//
//	SKEIN_CLUSTER_ROUNDS  node losses per bus, one job each (default 1)
//	SKEIN_CLUSTER_TASKS   tasks of each job (default 400)
const (
	runtimes = 2
	slots    = 2
	sleepS   = 0.05 // each task's sleep: 400 tasks take about 5 s on 4 slots
	// jobLimit bounds a job from its node's death to its end: a live
	// cluster takes over within seconds.
	jobLimit = 90 * time.Second
)

var (
	binsOnce sync.Once
	bins     chaos.Bins
	binsErr  error
	binDir   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func buildPrograms(t *testing.T) chaos.Bins {
	binsOnce.Do(func() {
		binDir, binsErr = os.MkdirTemp("", "skein-cluster-bin-")
		if binsErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		bins, binsErr = chaos.Build(ctx, binDir, false)
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a number ≥ 1", name, v)
	}
	return n
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withQuery adds query to every URL of the list.
func withQuery(urls []string, query string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		out[i] = u + sep + query
	}
	return strings.Join(out, ",")
}

// TestNodeLossMidJobNATS: the coordinator's nats-server node is
// SIGKILLed mid-job; the job completes exactly (see the package doc).
func TestNodeLossMidJobNATS(t *testing.T) {
	c := testenv.NATSClusterEnv(t)
	ns := "cl" + randHex(4)
	runNodeLoss(t, c, withQuery(c.URLs, "ns="+ns+"&replicas=3"), hooks{
		coordinatorNode: natsCoordinatorNode,
		replicated:      func(ctx context.Context) error { return natsReplicated(ctx, c, strings.ToUpper(ns)+"_") },
		diagnose:        func() string { return "" },
	})
}

// TestNodeLossMidJobRabbitMQ: the coordinator's RabbitMQ node is
// SIGKILLed mid-job; the job completes exactly (see the package doc).
func TestNodeLossMidJobRabbitMQ(t *testing.T) {
	c := testenv.AMQPClusterEnv(t)
	ns := "cl" + randHex(4)
	runNodeLoss(t, c, withQuery(c.URLs, "ns="+ns), hooks{
		coordinatorNode: amqpCoordinatorNode,
		replicated:      func(context.Context) error { return amqpReplicated(c, ns+".") },
		diagnose:        func() string { return amqpState(c, ns+".") },
	})
}

// programEnv is this process's environment without any SKEIN_ or OTEL_
// setting (a developer's SKEIN_BUS must not leak in), with storage under
// dir.
func programEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SKEIN_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "SKEIN_STORAGE_LOCAL_ROOT="+filepath.Join(dir, "storage"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
}

func logDir(t *testing.T) string {
	root := os.Getenv("SKEIN_TEST_DIR")
	if root == "" {
		root = os.TempDir()
	}
	return filepath.Join(root, "cluster", t.Name()+"-"+time.Now().Format("20060102-150405"))
}

// hooks are what runNodeLoss needs to know of a bus.
type hooks struct {
	// coordinatorNode is the node (1 to 3) the coordinator is connected to.
	coordinatorNode func(context.Context, *testenv.Cluster) (int, error)
	// replicated checks, once the programs run, that the namespace's
	// queues and streams are replicated on the three nodes.
	replicated func(context.Context) error
	// diagnose describes the broker's side, for a failure.
	diagnose func() string
}

// runNodeLoss starts a coordinator and the runtimes on busURL (the
// cluster's nodes), then plays SKEIN_CLUSTER_ROUNDS rounds: a job, the
// coordinator's node SIGKILLed mid-job, the job's result checked, the
// node started again.
func runNodeLoss(t *testing.T, c *testenv.Cluster, busURL string, h hooks) {
	coordinatorNode, replicated := h.coordinatorNode, h.replicated
	b := buildPrograms(t)
	rounds := envInt(t, "SKEIN_CLUSTER_ROUNDS", 1)
	tasks := envInt(t, "SKEIN_CLUSTER_TASKS", 400)
	dataDir := t.TempDir()
	procs, err := chaos.NewProcs(logDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(procs.Close)
	t.Logf("programs' logs: %s", procs.LogDir)
	env := programEnv(dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*3*time.Minute)
	defer cancel()

	coord, err := procs.Start(chaos.ProcSpec{Name: "coordinator", Path: b.Path("coordinator"), Env: env,
		Args: []string{"--bus", busURL, "--backend", "workers", "--log-level", "info"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.WaitLog(ctx, "coordinator serving"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= runtimes; i++ {
		name := fmt.Sprintf("runtime-%d", i)
		p, err := procs.Start(chaos.ProcSpec{Name: name, Path: b.Path("runtime"), Env: env,
			Args: []string{"--bus", busURL, "--slots", strconv.Itoa(slots), "--lease", "5s", "--worker-id", name, "--log-level", "info"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitLog(ctx, "runtime started"); err != nil {
			t.Fatal(err)
		}
	}
	// The test's own connection counts the tasks done (the task events
	// the runtimes publish), to kill the node mid-job.
	watch, err := dial.Open(ctx, busURL, dial.Options{Name: "skein-cluster-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	failed := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n%s\n%s", append(args, h.diagnose(), logs(procs))...)
	}
	if err := replicated(ctx); err != nil {
		failed("%v", err)
	}
	for round := 1; round <= rounds; round++ {
		name := fmt.Sprintf("r%d", round)
		path := filepath.Join(dataDir, name+".json")
		if err := writeIterdata(path, name, tasks); err != nil {
			t.Fatal(err)
		}
		ectx, stopEvents := context.WithCancel(ctx)
		events, err := watch.Subscribe(ectx, "task.>", bus.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := procs.Start(chaos.ProcSpec{Name: "submit-" + name, Path: b.Path("submit"), Env: env, Split: true,
			Args: []string{"map", "--function", "sleep", "--iterdata-from", path, "--progress", "lines", "--log-level", "info", "--bus", busURL}})
		if err != nil {
			t.Fatal(err)
		}
		// Mid-job: at least a tenth of the tasks done, fewer than half.
		done, err := waitDone(ctx, sub, events, tasks/10)
		stopEvents()
		if err != nil {
			failed("round %d: %v", round, err)
		}
		if done > tasks/2 {
			failed("round %d: %d of %d tasks were done before the node could be killed: not mid-job (slow down the tasks)", round, done, tasks)
		}
		node, err := coordinatorNode(ctx, c)
		if err != nil {
			failed("round %d: which node is the coordinator on: %v", round, err)
		}
		before := strings.Count(coord.Log(), "reconnected")
		t.Logf("round %d: %d/%d tasks done; SIGKILL node %d (%s), the coordinator's", round, done, tasks, node, c.URLs[node-1])
		killed := time.Now()
		c.KillNode(t, node)
		wctx, cancelWait := context.WithTimeout(ctx, jobLimit)
		err = sub.Wait(wctx)
		cancelWait()
		if err != nil {
			sub.Kill()
			failed("round %d: the job did not end within %s of node %d's death: %v", round, jobLimit, node, err)
		}
		t.Logf("round %d: submit exited %s, %s after the kill", round, sub.Exit(), time.Since(killed).Round(time.Millisecond))
		if sub.ExitCode() != 0 {
			failed("round %d: submit: %s, want exit 0; stderr:\n%s", round, sub.Exit(), sub.Tail(30))
		}
		if detail := compareResult(name, tasks, sub.Stdout()); detail != "" {
			failed("round %d: the result is not exact:\n%s", round, detail)
		}
		// The API answers while the node is still down: the job's status
		// through another submit process (a request to the coordinator).
		m := jobIDLine.FindStringSubmatch(sub.Log())
		if m == nil {
			failed("round %d: submit did not name its job", round)
		}
		st, err := procs.Start(chaos.ProcSpec{Name: "status-" + name, Path: b.Path("submit"), Env: env, Split: true,
			Args: []string{"status", m[1], "--log-level", "info", "--bus", busURL}})
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancelStatus := context.WithTimeout(ctx, 30*time.Second)
		err = st.Wait(sctx)
		cancelStatus()
		var status struct{ State string }
		if err != nil || st.ExitCode() != 0 || json.Unmarshal([]byte(st.Stdout()), &status) != nil || status.State != "done" {
			st.Kill()
			failed("round %d: submit status %s with node %d down: %v, %s, stdout %q, want exit 0 and state done; stderr:\n%s", round, m[1], node, err, st.Exit(), st.Stdout(), st.Tail(20))
		}
		if strings.Count(coord.Log(), "reconnected") == before {
			failed("round %d: the coordinator did not log a reconnection after its node %d was killed", round, node)
		}
		if now, err := coordinatorNode(ctx, c); err != nil || now == node {
			failed("round %d: the coordinator is on node %d (%v), want another than the killed node %d", round, now, err, node)
		}
		c.StartNode(t, node)
		if !coord.Running() {
			failed("round %d: the coordinator exited: %s", round, coord.Exit())
		}
	}
}

func writeIterdata(path, name string, n int) error {
	type elem struct {
		X     float64 `json:"x"`
		Value string  `json:"value"`
	}
	elems := make([]elem, n)
	for i := range elems {
		elems[i] = elem{X: sleepS, Value: fmt.Sprintf("%s/%d", name, i)}
	}
	b, err := json.Marshal(elems)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// jobIDLine is submit's first progress line, which names the job.
var jobIDLine = regexp.MustCompile(`(?m)^job ([a-z0-9]+) `)

// waitDone reads task events until n distinct tasks are done, and
// returns the count.
func waitDone(ctx context.Context, sub *chaos.Proc, events <-chan bus.Message, n int) (int, error) {
	done := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(done) < n {
		select {
		case m, ok := <-events:
			if !ok {
				return len(done), fmt.Errorf("the event subscription ended with %d tasks done: %v", len(done), ctx.Err())
			}
			evs, err := coordinator.DecodeEvents(m.Data)
			if err != nil {
				return len(done), fmt.Errorf("an event on %s: %v", m.Subject, err)
			}
			for _, ev := range evs {
				if ev.Type == wire.EventDone && ev.Kind == wire.TaskMap {
					done[ev.Job+"/"+strconv.Itoa(ev.Task)] = true
				}
			}
		case <-tick.C:
			if !sub.Running() {
				return len(done), fmt.Errorf("submit exited (%s) with %d tasks done, before %d; stderr:\n%s", sub.Exit(), len(done), n, sub.Tail(20))
			}
		case <-ctx.Done():
			return len(done), ctx.Err()
		}
	}
	return len(done), nil
}

// compareResult checks submit's stdout: a JSON list whose element i is
// "<name>/<i>". It returns what is wrong, or "".
func compareResult(name string, n int, stdout string) string {
	var got []json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &got); err != nil {
		return fmt.Sprintf("stdout is not a JSON list (%v): %.200q", err, stdout)
	}
	var bad []string
	for i := 0; i < n || i < len(got); i++ {
		want, _ := json.Marshal(fmt.Sprintf("%s/%d", name, i))
		switch {
		case i >= n:
			bad = append(bad, fmt.Sprintf("element %d: %s, beyond the %d elements", i, got[i], n))
		case i >= len(got):
			bad = append(bad, fmt.Sprintf("element %d: missing, want %s", i, want))
		case !bytes.Equal(bytes.TrimSpace(got[i]), want):
			bad = append(bad, fmt.Sprintf("element %d: %s, want %s", i, got[i], want))
		}
	}
	if len(bad) > 12 {
		bad = append(bad[:12], fmt.Sprintf("… and %d more", len(bad)-12))
	}
	return strings.Join(bad, "\n")
}

// natsReplicated checks that the streams named with prefix exist (tasks
// and events) with 3 replicas, from node 1's /jsz.
func natsReplicated(ctx context.Context, c *testenv.Cluster, prefix string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Monitor[0]+"/jsz?streams=true&config=true", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name   string `json:"name"`
				Config struct {
					Replicas int `json:"num_replicas"`
				} `json:"config"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return fmt.Errorf("/jsz: %v", err)
	}
	found := map[string]int{}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if strings.HasPrefix(s.Name, prefix) {
				found[s.Name] = s.Config.Replicas
			}
		}
	}
	if found[prefix+"TASKS"] != 3 || found[prefix+"EVENTS"] != 3 {
		return fmt.Errorf("streams %s* and their replicas: %v, want TASKS and EVENTS with 3", prefix, found)
	}
	return nil
}

// amqpReplicated checks that the namespace's work queue (the default
// pool's) is a quorum queue and its event log a stream, each with a
// member on the three nodes.
func amqpReplicated(c *testenv.Cluster, prefix string) error {
	out, err := c.Ctl("ctl", "1", "list_queues", "name", "type", "members", "--formatter", "json")
	if err != nil {
		return err
	}
	var qs []struct {
		Name    string
		Type    string
		Members json.RawMessage // a list for quorum queues and streams, "" for classic ones
	}
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		return fmt.Errorf("list_queues: %v: %.500s", err, out)
	}
	want := map[string]string{prefix + "default": "quorum", prefix + "events": "stream"}
	for _, q := range qs {
		var members []string
		_ = json.Unmarshal(q.Members, &members)
		if typ, ok := want[q.Name]; ok && q.Type == typ && len(members) == 3 {
			delete(want, q.Name)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("not found as 3-member queues of their type: %v; list_queues:\n%.2000s", want, out)
	}
	return nil
}

// amqpState lists the namespace's queues (with their node and consumers)
// and bindings, as evidence for a failure.
func amqpState(c *testenv.Cluster, prefix string) string {
	var b strings.Builder
	for n := 1; n <= len(c.URLs); n++ {
		qs, err := c.Ctl("ctl", strconv.Itoa(n), "list_queues", "name", "type", "pid", "consumers", "messages", "-s")
		if err != nil {
			continue
		}
		bs, _ := c.Ctl("ctl", strconv.Itoa(n), "list_bindings", "source_name", "destination_name", "routing_key", "-s")
		fmt.Fprintf(&b, "RabbitMQ, asked through node %d: queues of %s*:\n", n, prefix)
		for _, l := range strings.Split(qs, "\n") {
			if strings.HasPrefix(l, prefix) {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
		fmt.Fprintf(&b, "bindings:\n")
		for _, l := range strings.Split(bs, "\n") {
			if strings.HasPrefix(l, prefix) {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
		break
	}
	return b.String()
}

// natsCoordinatorNode asks each node's monitoring endpoint for the
// connections named skein-coordinator (the name cmd/coordinator gives its
// bus connection) and returns the node (1 to 3) that holds one.
func natsCoordinatorNode(ctx context.Context, c *testenv.Cluster) (int, error) {
	var found []int
	for i, mon := range c.Monitor {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, mon+"/connz?limit=4096", nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // a node that is down holds no connection
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		var connz struct {
			Connections []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		if err := json.Unmarshal(body, &connz); err != nil {
			return 0, fmt.Errorf("%s/connz: %v", mon, err)
		}
		for _, cn := range connz.Connections {
			if cn.Name == "skein-coordinator" {
				found = append(found, i+1)
			}
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("connections named skein-coordinator on nodes %v, want one", found)
	}
	return found[0], nil
}

// amqpCoordinatorNode asks the cluster (rabbitmqctl list_connections, on
// a node that answers) for the connection named skein-coordinator and
// returns the node (1 to 3) whose AMQP port it is connected to.
func amqpCoordinatorNode(ctx context.Context, c *testenv.Cluster) (int, error) {
	ports := map[string]int{}
	for i, u := range c.URLs {
		pu, err := url.Parse(u)
		if err != nil {
			return 0, err
		}
		ports[pu.Port()] = i + 1
	}
	var lastErr error
	for n := 1; n <= len(c.URLs); n++ {
		out, err := c.Ctl("ctl", strconv.Itoa(n), "list_connections", "port", "client_properties", "--formatter", "json")
		if err != nil {
			lastErr = err
			continue
		}
		var conns []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(out), &conns); err != nil {
			return 0, fmt.Errorf("list_connections: %v: %.500s", err, out)
		}
		var found []int
		for _, cn := range conns {
			if !bytes.Contains(cn["client_properties"], []byte(`"skein-coordinator"`)) {
				continue
			}
			found = append(found, ports[strings.Trim(string(cn["port"]), `"`)])
		}
		if len(found) != 1 || found[0] == 0 {
			return 0, fmt.Errorf("connections named skein-coordinator on nodes %v (0: an unknown port), want one; list_connections:\n%.2000s", found, out)
		}
		return found[0], nil
	}
	return 0, lastErr
}

// logs is the end of every program's log, for a failure.
func logs(procs *chaos.Procs) string {
	var b strings.Builder
	fmt.Fprintf(&b, "programs' logs (in full in %s):\n", procs.LogDir)
	for _, p := range procs.All() {
		fmt.Fprintf(&b, "--- %s (%s):\n%s\n", p.Name, p.Exit(), p.Tail(40))
	}
	return b.String()
}
