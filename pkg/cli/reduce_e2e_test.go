package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// One reducer per object: wordcount over chunks of three objects, reduced
// per object, gives each object's `wc -w`, in key order.
func TestReducerOnePerObject(t *testing.T) {
	dir := t.TempDir()
	var want []int64
	for i, size := range []int{300 << 10, 90 << 10, 700 << 10} {
		p := filepath.Join(dir, fmt.Sprintf("part-%d.txt", i))
		writeText(t, p, size)
		want = append(want, wcWords(t, p))
	}
	for _, mode := range []string{"streaming", "barrier"} {
		out := mustSubmit(t, "mapreduce", "--function", "wordcount", "--iterdata", fmt.Sprintf(`["local://%s/"]`, dir),
			"--chunk-n", "5", "--reduce-function", "sum", "--reducer-one-per-object", "--reduce-mode", mode)
		var got []int64
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: %q: %v", mode, out, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: per-object counts %v, want wc -w %v", mode, got, want)
		}
	}
}

// A malformed message on a task queue (not msgpack; an unknown envelope
// version) is rejected to the dead-letter queue with a logged reason; it
// neither crashes the runtime nor blocks the queue.
func TestMalformedTaskMessages(t *testing.T) {
	url := namespaced(t, testenv.Require(t, testenv.AMQPURL))
	rts := cluster(t, url, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := dial.Open(ctx, url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	since := time.Now()
	future, _ := wire.Encode(wire.KindTask, wire.Task{Job: "jx", Function: "add"})
	future[3] = 99 // an envelope version this build does not know
	if err := b.Enqueue(ctx, "default", bus.Message{Data: []byte("this is not msgpack")}, bus.Message{Data: future}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := submit(t, "map", "--function", "add", "--iterdata", `[1,2]`, "--extra-params", `{"y":1}`, "--bus", url)
	if code != 0 || out != "[2,3]\n" {
		t.Fatalf("a job after the malformed messages: exit %d %q %s", code, out, errOut)
	}
	rb, ok := b.(*rabbitmq.Bus)
	if !ok {
		t.Fatalf("dial gave a %T", b)
	}
	var dl []rabbitmq.DeadLetter
	for deadline := time.Now().Add(10 * time.Second); len(dl) < 2 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		all, err := rb.DeadLetters(ctx, "default", 100)
		if err != nil {
			t.Fatal(err)
		}
		dl = dl[:0]
		for _, d := range all {
			if d.At.After(since) {
				dl = append(dl, d)
			}
		}
	}
	if len(dl) != 2 {
		t.Fatalf("dead letters: %+v, want 2", dl)
	}
	for _, d := range dl {
		if !strings.Contains(d.Reason, "malformed task") {
			t.Fatalf("dead letter without the reason: %+v", d)
		}
	}
	logs := rts[0].out.String()
	if !strings.Contains(logs, "rejecting malformed task") || !strings.Contains(logs, "unsupported envelope version") {
		t.Fatalf("the runtime did not log why:\n%s", logs)
	}
}
