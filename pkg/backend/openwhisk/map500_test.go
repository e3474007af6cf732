package openwhisk

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/backend/openwhisk/owtest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/wire"
)

var (
	progsOnce sync.Once
	progsDir  string
	progsErr  error
)

// programs builds cmd/runtime, cmd/coordinator and cmd/submit once for the
// package.
func programs(t testing.TB) string {
	t.Helper()
	progsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ow-progs")
		if err != nil {
			progsErr = err
			return
		}
		out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/skeinrun/skein/cmd/runtime", "github.com/skeinrun/skein/cmd/coordinator", "github.com/skeinrun/skein/cmd/submit").CombinedOutput()
		if err != nil {
			progsErr = fmt.Errorf("%v: %s", err, out)
		}
		progsDir = dir
	})
	if progsErr != nil {
		t.Fatalf("build the programs: %v", progsErr)
	}
	return progsDir
}

// TestMap500 is the end-to-end run: a map of 500 tasks submitted through
// the client to a real coordinator (the program, --backend openwhisk) on
// a nats-server process; the coordinator publishes the tasks and dispatches
// them through the openwhisk backend to the fake controller, whose
// activations run the real runtime program in action mode ("runtime
// action" subprocesses driven over /init and /run). Results come back on
// the bus, through the coordinator, to the client. On the way the
// controller rotates the key once (one 401, then the coordinator re-reads
// its key file) and throttles (429) past 12 activations in flight and
// three times on demand.
func TestMap500(t *testing.T) {
	const N, batch = 500, 10
	bin := programs(t)
	// The nats-server process of scripts/services/nats.sh (the
	// in-process server races in its own code under -race), in a
	// namespace of this run's own.
	busURL := fmt.Sprintf("%s?ns=ow500-%d", testenv.Require(t, testenv.NATSURL), time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	containers := &testenv.Buffer{}
	ctl, err := owtest.Start(owtest.Config{APIKey: "u:k1", Command: []string{filepath.Join(bin, "runtime"), "action", "--log-level", "warn"},
		MaxContainers: 6, MaxInFlight: 12, RetryAfter: "0.05", ContainerOutput: containers, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	keyFile := filepath.Join(t.TempDir(), "ow-key")
	if err := os.WriteFile(keyFile, []byte("u:k1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	coordOut := &testenv.Buffer{}
	co := exec.Command(filepath.Join(bin, "coordinator"), "--bus", busURL, "--log-level", "debug",
		"--backend", "openwhisk", "--ow-image", "skein/runtime:test", "--ow-batch", fmt.Sprint(batch),
		"--ow-idle", "300ms", "--ow-timeout-ms", "30000", "--ow-max-attempts", "200")
	co.Env = append(os.Environ(), "SKEIN_OW_APIHOST="+ctl.URL(), "SKEIN_OW_API_KEY_FILE="+keyFile)
	co.Stdout, co.Stderr = coordOut, coordOut
	if err := co.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = co.Process.Signal(syscall.SIGTERM)
		_ = co.Wait()
		if t.Failed() {
			t.Logf("coordinator:\n%s\ncontainers:\n%s", coordOut.String(), containers.String())
		}
	}()
	for !strings.Contains(coordOut.String(), "coordinator serving") {
		if ctx.Err() != nil {
			t.Fatalf("coordinator did not come up:\n%s", coordOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(coordOut.String(), "u:k1") {
		t.Fatal("the coordinator logged the API key")
	}

	// The key is rotated before the first request (the action's PUT):
	// one 401, then the coordinator reads the new key from its file.
	ctl.RotateKey("u:k2")
	if err := os.WriteFile(keyFile, []byte("u:k2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// And three invocations are throttled on demand, on top of the
	// in-flight limit of 12, which the job's 16 pool threads exceed.
	ctl.Throttle(3)

	b, err := dial.Open(ctx, busURL, dial.Options{Name: "test-client", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	iter := make([]int, N)
	for i := range iter {
		iter[i] = i
	}
	iterdata, _ := json.Marshal(iter)
	start := time.Now()
	res, st, err := client.New(b).Run(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add",
		Iterdata: iterdata, ExtraParams: wire.Value(`{"y":1}`), InvokePoolThreads: 16})
	if err != nil {
		t.Fatalf("job: %v (status %+v, controller %+v)", err, st, ctl.Stats())
	}
	elapsed := time.Since(start)
	var got []int
	if err := json.Unmarshal(res, &got); err != nil || len(got) != N {
		t.Fatalf("result is not %d numbers: %v: %.200s", N, err, res)
	}
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("result %d is %d, want %d", i, v, i+1)
		}
	}
	if st.State != wire.StateDone || st.Done != N || st.Failed != 0 || st.Retried != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := ctl.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cst := ctl.Stats()
	t.Logf("500 tasks in %v; controller %+v", elapsed, cst)
	if cst.Invocations != N/batch || cst.Activations != N/batch {
		t.Fatalf("invocations accepted %d, activations finished %d; want %d each", cst.Invocations, cst.Activations, N/batch)
	}
	if cst.Unauthorized != 1 {
		t.Fatalf("401s: %d, want 1 (one rotation, one refresh)", cst.Unauthorized)
	}
	if cst.Throttled < 3 {
		t.Fatalf("429s: %d, want >= 3", cst.Throttled)
	}
	if cst.MaxInFlightAt > 12 {
		t.Fatalf("in flight reached %d past the limit 12", cst.MaxInFlightAt)
	}
	if cst.Failed != 0 || cst.ColdStarts > 6 {
		t.Fatalf("%d activations failed, %d containers started (at most 6)", cst.Failed, cst.ColdStarts)
	}
	// The activations' summaries add up to the tasks run, each by the
	// real runtime (worker "ow-<activation id>").
	total := 0.0
	for _, r := range ctl.Records() {
		result := r["response"].(map[string]any)["result"].(map[string]any)
		if w, _ := result["worker"].(string); !strings.HasPrefix(w, "ow-") || result["pool"] != "default" {
			t.Fatalf("activation result %v", result)
		}
		total += result["tasks"].(float64)
	}
	if total != N {
		t.Fatalf("activation summaries count %v tasks, want %d", total, N)
	}
}
