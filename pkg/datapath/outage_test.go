package datapath_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/datapath"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestStorageOutageIsRidden: a task's storage operations (storing a large
// result, loading a stored value) ride out a storage server that refuses
// connections for a few seconds, instead of failing the task; a missing
// object still fails at once.
func TestStorageOutageIsRidden(t *testing.T) {
	endpoint := testenv.Require(t, testenv.S3Endpoint)
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewOutageProxy(t, u.Host)
	cfg := storage.DefaultConfig()
	cfg.LocalRoot = t.TempDir()
	cfg.InlineLimit = 1024
	cfg.ArtifactsURL = fmt.Sprintf("s3://outage-%d/jobs/", time.Now().UnixNano()%1e9)
	cfg.COS = storage.COSConfig{Endpoint: "http://" + proxy.Addr(), Region: storage.DefaultRegion, PathStyle: true,
		AccessKey: testenv.Require(t, testenv.S3Access), SecretKey: storage.Secret(testenv.Require(t, testenv.S3Secret))}
	p, err := datapath.FromConfig(cfg, slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	task := &wire.Task{Job: "job1", Index: 3, Attempt: 1, Kind: wire.TaskMap}
	big := wire.Value(`"` + strings.Repeat("x", 2000) + `"`)
	// The bucket is made on first use, while the server is up.
	warm := &wire.Event{Type: wire.EventDone, Result: big}
	if err := p.Finish(ctx, &wire.Task{Job: "job0", Index: 0, Attempt: 1, Kind: wire.TaskMap}, warm); err != nil {
		t.Fatal(err)
	}

	outage := func(d time.Duration) {
		proxy.Down(true)
		time.AfterFunc(d, func() { proxy.Down(false) })
	}
	outage(2 * time.Second)
	start := time.Now()
	ev := &wire.Event{Type: wire.EventDone, Result: big}
	if err := p.Finish(ctx, task, ev); err != nil {
		t.Fatalf("storing a result across a 2 s outage: %v (after %v)", err, time.Since(start))
	}
	if ev.ResultRef == "" || ev.Result != nil {
		t.Fatalf("the result was not stored by reference: %+v", ev)
	}
	outage(2 * time.Second)
	v, err := p.Resolve(ctx, ev.ResultRef)
	if err != nil || string(v) != string(big) {
		t.Fatalf("loading a result across a 2 s outage: %v", err)
	}
	// A stored task input, loaded by Prepare.
	outage(2 * time.Second)
	c := &fn.Call{}
	in := &wire.Task{Job: "job0", Index: 0, Attempt: 1, Kind: wire.TaskMap, InputRef: warm.ResultRef}
	err = p.Prepare(ctx, in, c)
	// The stored value is a result, not an input: past the outage, it is
	// read and refused for its form, not for the storage.
	if te := fn.Classify(err); err == nil || te.Kind != wire.ErrBadInput {
		t.Fatalf("preparing across a 2 s outage: %v, want the stored value read (and refused as bad input)", err)
	}

	// A job's stored input, opened and read by the coordinator: an outage
	// when it is opened, and another that cuts the read midway (32 MB,
	// more than the sockets between hold, so that most of it is unread).
	var in32 strings.Builder
	in32.WriteString(`[`)
	for i := 0; in32.Len() < 32<<20; i++ {
		fmt.Fprintf(&in32, "%q,", fmt.Sprintf("element %d of the input, with a few words more", i))
	}
	input := strings.TrimSuffix(in32.String(), ",") + `]`
	spec := &wire.JobSpec{ID: "job2"}
	// Stored by submit across an outage.
	outage(2 * time.Second)
	start = time.Now()
	ref, err := p.StoreInput(ctx, spec.ID, strings.NewReader(input))
	if err != nil {
		t.Fatalf("storing a job's input across a 2 s outage: %v (after %v)", err, time.Since(start))
	}
	for proxy.IsDown() {
		time.Sleep(50 * time.Millisecond)
	}
	outage(2 * time.Second)
	start = time.Now()
	rc, err := p.LoadInput(ctx, spec, ref)
	if err != nil {
		t.Fatalf("opening a stored input across a 2 s outage: %v (after %v)", err, time.Since(start))
	}
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	outage(2 * time.Second)
	rest, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("reading a stored input across a 2 s outage: %v", err)
	}
	if got := append(head, rest...); string(got) != input {
		t.Fatalf("read %d bytes of the input, want its %d, byte for byte", len(got), len(input))
	}
	for proxy.IsDown() {
		time.Sleep(50 * time.Millisecond)
	}

	// An outage longer than the tries: the task fails, saying so.
	defer datapath.SetOutageFor(time.Second)()
	outage(3 * time.Second)
	start = time.Now()
	err = p.Finish(ctx, task, &wire.Event{Type: wire.EventDone, Result: big})
	if err == nil || !strings.Contains(err.Error(), "still failing after 1s of tries") || !strings.Contains(err.Error(), "out/3.1") {
		t.Fatalf("storing a result across an outage longer than the tries: %v", err)
	}
	if d := time.Since(start); d < time.Second || d > 2*time.Second {
		t.Fatalf("gave up after %v, want after about 1s", d)
	}
	for proxy.IsDown() {
		time.Sleep(50 * time.Millisecond)
	}

	// Not retried: a missing object.
	start = time.Now()
	_, err = p.Resolve(ctx, strings.Replace(ev.ResultRef, "out/3.1", "out/9.1", 1))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a missing result: %v, want not found", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a missing result failed after %v, want at once", d)
	}
}
