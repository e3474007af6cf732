package openwhisk

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/backend/openwhisk/owtest"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/wire"
)

func TestNativeCode(t *testing.T) {
	if _, err := NativeCode([]byte("#!/bin/sh\n"), ""); err == nil {
		t.Fatal("a script was accepted as the native exec")
	}
	code, err := NativeCode(append([]byte("\x7fELF"), make([]byte, 100)...), ExecEnvForKind("go:1.24"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(code)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
		if f.Name == "exec" && f.Mode().Perm() != 0o755 {
			t.Errorf("exec has mode %v, want 0755", f.Mode())
		}
	}
	if len(files) != 2 || files["exec.env"] != "openwhisk/action-golang-v1.24" || !strings.HasPrefix(files["exec"], "\x7fELF") {
		t.Fatalf("zip holds %d files, exec.env %q", len(files), files["exec.env"])
	}
	if ExecEnvForKind("blackbox") != "" || ExecEnvForKind("nodejs:20") != "" {
		t.Fatal("an execution environment for a kind that is not go:1.N")
	}
}

// startCoordinator runs the coordinator program with the openwhisk
// backend against ctl and waits until it serves.
func startCoordinator(t *testing.T, ctx context.Context, bin, busURL string, ctl *owtest.Controller, args ...string) *testenv.Buffer {
	t.Helper()
	out := &testenv.Buffer{}
	co := exec.Command(filepath.Join(bin, "coordinator"), append([]string{"--bus", busURL, "--log-level", "debug",
		"--backend", "openwhisk", "--ow-max-attempts", "200"}, args...)...)
	co.Env = append(os.Environ(), "SKEIN_OW_APIHOST="+ctl.URL(), "SKEIN_OW_API_KEY=u:k1")
	co.Stdout, co.Stderr = out, out
	if err := co.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = co.Process.Signal(syscall.SIGTERM)
		_ = co.Wait()
		if t.Failed() {
			t.Logf("coordinator:\n%s", out.String())
		}
	})
	for !strings.Contains(out.String(), "coordinator serving") {
		if ctx.Err() != nil {
			t.Fatalf("coordinator did not come up:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
}

// TestNativeGoAction: the coordinator program deploys the runtime as a
// native go:1.24 action (the program zipped as exec, with exec.env) and
// invokes it; the fake controller runs each container as the stand-in
// for the action-golang image's actionloop proxy, which starts the
// runtime program as its exec (actionloop mode, chosen by itself) after
// its acknowledgement. A 60-task map comes back right through the client,
// and a 3-task map through the submit program, which prints it.
func TestNativeGoAction(t *testing.T) {
	const N, batch = 60, 10
	bin := programs(t)
	busURL := fmt.Sprintf("%s?ns=ownative-%d", testenv.Require(t, testenv.NATSURL), time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	containers := &testenv.Buffer{}
	ctl, err := owtest.Start(owtest.Config{APIKey: "u:k1", MaxContainers: 2, ContainerOutput: containers, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	defer func() {
		if t.Failed() {
			t.Logf("containers:\n%s", containers.String())
		}
	}()
	startCoordinator(t, ctx, bin, busURL, ctl, "--ow-kind", "go:1.24", "--ow-exec", filepath.Join(bin, "runtime"),
		"--ow-batch", fmt.Sprint(batch), "--ow-idle", "300ms", "--ow-timeout-ms", "30000")

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
	res, st, err := client.New(b).Run(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "add",
		Iterdata: iterdata, ExtraParams: wire.Value(`{"y":1}`)})
	if err != nil {
		t.Fatalf("job: %v (status %+v, controller %+v)", err, st, ctl.Stats())
	}
	var got []int
	if err := json.Unmarshal(res, &got); err != nil || len(got) != N {
		t.Fatalf("result is not %d numbers: %v: %.200s", N, err, res)
	}
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("result %d is %d, want %d", i, v, i+1)
		}
	}
	if err := ctl.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cst := ctl.Stats()
	if cst.Failed != 0 || cst.Activations != N/batch {
		t.Fatalf("controller %+v: want %d activations, none failed", cst, N/batch)
	}
	total := 0.0
	for _, r := range ctl.Records() {
		result := r["response"].(map[string]any)["result"].(map[string]any)
		total += result["tasks"].(float64)
	}
	if total != N {
		t.Fatalf("activation summaries count %v tasks, want %d", total, N)
	}
	// The submit program, on the same coordinator, prints the result.
	sub := exec.CommandContext(ctx, filepath.Join(bin, "submit"), "map", "--bus", busURL, "--function", "add",
		"--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--quiet")
	var subErr bytes.Buffer
	sub.Stderr = &subErr
	out, err := sub.Output()
	if err != nil || strings.TrimSpace(string(out)) != "[2,3,4]" {
		t.Fatalf("submit map: %v, stdout %q, stderr:\n%s", err, out, subErr.String())
	}
	if !strings.Contains(containers.String(), "actionloop ready") {
		t.Fatalf("the containers did not run the runtime in actionloop mode:\n%s", containers.String())
	}
}
