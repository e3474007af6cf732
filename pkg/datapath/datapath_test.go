package datapath_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/datapath"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func newPath(t *testing.T) (*datapath.Path, string) {
	t.Helper()
	cfg := storage.DefaultConfig()
	cfg.LocalRoot = t.TempDir()
	cfg.InlineLimit = 1024
	p, err := datapath.FromConfig(cfg, slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("one two\nthree\nfour five six\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func vals(s ...string) []wire.Value {
	out := make([]wire.Value, len(s))
	for i, x := range s {
		out[i] = wire.Value(x)
	}
	return out
}

func TestExpand(t *testing.T) {
	p, dir := newPath(t)
	ctx := context.Background()
	u := "local://" + filepath.Join(dir, "a.txt")
	extra := map[string]wire.Value{"y": wire.Value("2")}

	// Plain iterdata: nil inputs, the coordinator's own rules apply.
	ins, objs, err := p.Expand(ctx, &wire.JobSpec{}, vals("1", "[2,3]", `{"x":1}`), extra)
	if err != nil || ins != nil || objs != nil {
		t.Fatalf("plain iterdata: %v %v %v, want nil inputs", ins, objs, err)
	}

	ins, objs, err = p.Expand(ctx, &wire.JobSpec{ChunkN: 2}, vals("7", `"`+u+`"`, `{"obj":"`+u+`","k":"v"}`), extra)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 5 || len(objs) != 5 {
		t.Fatalf("got %d inputs and %d objects, want 1 + 2 + 2", len(ins), len(objs))
	}
	if objs[0] != nil || string(ins[0].Args[0]) != "7" || string(ins[0].Kwargs["y"]) != "2" {
		t.Errorf("plain element: %+v %+v", ins[0], objs[0])
	}
	for i := 1; i < 5; i++ {
		o := objs[i]
		if o == nil || o.URL != u || o.Parts != 2 || o.Part != (i-1)%2 || o.Group != (i-1)/2 {
			t.Errorf("task %d: object %+v", i, o)
		}
		if _, ok := ins[i].Kwargs["obj"]; ok || len(ins[i].Args) != 0 || string(ins[i].Kwargs["y"]) != "2" {
			t.Errorf("task %d: input %+v: want extra_params and no obj argument", i, ins[i])
		}
	}
	if string(ins[3].Kwargs["k"]) != `"v"` || ins[1].Kwargs["k"] != nil {
		t.Errorf("element kwargs: %v / %v", ins[3].Kwargs, ins[1].Kwargs)
	}

	for _, c := range []struct {
		iter  []wire.Value
		extra map[string]wire.Value
		want  string
	}{
		{vals(`"` + u + `"`), map[string]wire.Value{"obj": wire.Value("1")}, `"obj" is reserved`},
		{vals(`{"obj":"` + u + `","y":1}`), extra, `argument "y" is set both`},
		{vals(`"local://` + dir + `/missing.txt"`), nil, "missing.txt: object not found"},
		{vals("1"), nil, "no iterdata element names storage"},
	} {
		spec := &wire.JobSpec{}
		if c.want == "no iterdata element names storage" {
			spec.ChunkN = 3
		}
		if _, _, err := p.Expand(ctx, spec, c.iter, c.extra); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Expand(%s): %v, want an error holding %q", c.iter, err, c.want)
		}
	}
}

func TestSpillPrepareFinishResolve(t *testing.T) {
	p, dir := newPath(t)
	ctx := context.Background()
	spec := &wire.JobSpec{ID: "job1", Clean: true}
	big := wire.Value(`"` + strings.Repeat("x", 2000) + `"`)
	ins := []coordinator.Input{{Args: vals("1")}, {Args: []wire.Value{big}, Kwargs: map[string]wire.Value{"y": wire.Value("2")}}}
	if err := p.Spill(ctx, spec, 0, ins); err != nil {
		t.Fatal(err)
	}
	if ins[0].Ref != "" || ins[1].Ref == "" || ins[1].Args != nil {
		t.Fatalf("spill: %+v", ins)
	}

	// The runtime side: the stored input and the chunk.
	obj := &wire.Object{URL: "local://" + filepath.Join(dir, "a.txt"), Store: "local", Key: strings.TrimPrefix(filepath.Join(dir, "a.txt"), "/"), Part: 1, Parts: 2, Start: 5, End: 10, Size: 28}
	task := &wire.Task{Job: "job1", Index: 1, Attempt: 1, Kind: wire.TaskMap, InputRef: ins[1].Ref, Obj: obj}
	c := &fn.Call{}
	if err := p.Prepare(ctx, task, c); err != nil {
		t.Fatal(err)
	}
	if len(c.Args) != 1 || string(c.Args[0]) != string(big) || string(c.Kwargs["y"]) != "2" {
		t.Fatalf("prepared input: %d args, kwargs %v", len(c.Args), c.Kwargs)
	}
	body, err := io.ReadAll(c.Obj.Body)
	if err != nil || string(body) != "three\n" || c.Obj.Part != 1 {
		t.Fatalf("chunk [5,10): %q %v, want the line starting in it", body, err)
	}
	c.Obj.Body.(io.Closer).Close()

	// A large result goes by reference; a reducer's under red/.
	ev := &wire.Event{Type: wire.EventDone, Result: big}
	if err := p.Finish(ctx, task, ev); err != nil || ev.Result != nil || !strings.HasSuffix(ev.ResultRef, "/job1/out/1.1") {
		t.Fatalf("finish: %v %q %q", err, ev.Result, ev.ResultRef)
	}
	v, err := p.Resolve(ctx, ev.ResultRef)
	if err != nil || string(v) != string(big) {
		t.Fatalf("resolve: %v", err)
	}
	rev := &wire.Event{Type: wire.EventDone, Result: big}
	if err := p.Finish(ctx, &wire.Task{Job: "job1", Index: 0, Attempt: 2, Kind: wire.TaskReduce}, rev); err != nil || !strings.HasSuffix(rev.ResultRef, "/job1/red/0.2") {
		t.Fatalf("reduce finish: %v %q", err, rev.ResultRef)
	}
	small := &wire.Event{Type: wire.EventDone, Result: wire.Value("3")}
	if err := p.Finish(ctx, task, small); err != nil || small.ResultRef != "" {
		t.Fatalf("a small result must stay inline: %v %+v", err, small)
	}
	if _, err := p.Resolve(ctx, "local://elsewhere/x"); err == nil {
		t.Fatal("resolving a reference outside the artifacts prefix must fail")
	}

	names := func() []string {
		infos, err := p.Artifacts().List(ctx, "job1")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range infos {
			out = append(out, in.Key[strings.Index(in.Key, "job1/"):])
		}
		return out
	}
	if got := strings.Join(names(), " "); got != "job1/in/1 job1/out/1.1 job1/red/0.2" {
		t.Fatalf("artifacts: %s", got)
	}
	// A --clean job that succeeded: the coordinator drops the inputs, the
	// submitter the rest once it fetched the results.
	p.Ended(ctx, spec, wire.JobStatus{State: wire.StateDone})
	if got := strings.Join(names(), " "); got != "job1/out/1.1 job1/red/0.2" {
		t.Fatalf("after a done --clean job ended: %s", got)
	}
	p.Ended(ctx, spec, wire.JobStatus{State: wire.StateFailed})
	if got := names(); len(got) != 0 {
		t.Fatalf("after a failed --clean job ended: %v", got)
	}
	// Missing objects are not retried.
	task.Obj = &wire.Object{URL: "local://" + dir + "/gone.txt", Key: strings.TrimPrefix(dir+"/gone.txt", "/"), Size: 28, End: 28}
	task.InputRef = ""
	c = &fn.Call{}
	if err := p.Prepare(ctx, task, c); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(c.Obj.Body)
	if te := fn.Classify(err); err == nil || te.Kind != wire.ErrBadInput || te.Retryable || !strings.Contains(te.Message, "gone.txt") {
		t.Fatalf("reading a missing object: %v, want a bad_input error naming it, not retried", err)
	}
}

func TestStoredInputFormat(t *testing.T) {
	p, _ := newPath(t)
	ins := []coordinator.Input{{Kwargs: map[string]wire.Value{"x": wire.Value(`"` + strings.Repeat("y", 3000) + `"`)}}}
	if err := p.Spill(context.Background(), &wire.JobSpec{ID: "j2"}, 0, ins); err != nil {
		t.Fatal(err)
	}
	data, err := p.Artifacts().Get(context.Background(), ins[0].Ref)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m["kwargs"] == nil || m["args"] != nil {
		t.Fatalf("stored input %.80s: want {\"kwargs\":…}", data)
	}
}
