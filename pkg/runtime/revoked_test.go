package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/rabbitmq"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestBufferedTasksOfALostConnectionRunOnce cuts the connection of a
// RabbitMQ runtime's consumer while it runs one task and holds three in
// its buffer. The broker puts all four back on the queue and delivers
// them again. The buffered ones used to run from the buffer as well, so
// each ran twice; now the runtime drops them (their delivery is revoked)
// and runs only the copies delivered again. The task running at the cut
// may run twice: it was under way, and its ack could not reach the
// broker.
func TestBufferedTasksOfALostConnectionRunOnce(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	ctl := testenv.Require(t, testenv.AMQPCtl)
	prefix := "rv" + randHex(4)
	name := "skein-test-" + prefix
	b := rabbitBus(t, url, rabbitmq.Options{Prefix: prefix, Name: name})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const tasks = 4
	job := "jrevoked"
	events, err := b.Subscribe(ctx, wire.TaskEvents(job), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]bus.Message, tasks)
	for i := range msgs {
		data, _ := wire.Encode(wire.KindTask, wire.Task{Job: job, Index: i, Kind: wire.TaskMap, Attempt: 1, Function: "sleep",
			Args: []json.RawMessage{json.RawMessage("3")}})
		msgs[i] = bus.Message{Data: data, Key: job}
	}
	rt, err := runtime.New(b, runtime.Config{Registry: fn.Builtins(), Slots: 1, Prefetch: tasks, StartedAfter: -1, WorkerID: "a", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = rt.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := b.Enqueue(ctx, "default", msgs...); err != nil {
		t.Fatal(err)
	}
	// The runtime takes all four at once (prefetch 4): one runs, three wait.
	// Each runs 3 s, so that the cut lands while the first runs even when
	// rabbitmqctl is slow (it took 1.5 s under CI's load, and the cut then
	// came as the first task, at 1.5 s then, ended and the second began).
	time.Sleep(500 * time.Millisecond)
	consumer := name + " consume " + prefix + ".default"
	// The pid as rabbitmqctl prints it in a table (the JSON form is not
	// one close_connection takes).
	out, err := exec.Command("sh", "-c", ctl+" ctl list_connections pid client_properties -q --no-table-headers").CombinedOutput()
	if err != nil {
		t.Fatalf("list_connections: %v: %s", err, out)
	}
	pid := ""
	for _, line := range strings.Split(string(out), "\n") {
		if p, props, ok := strings.Cut(line, "\t"); ok && strings.Contains(props, `"`+consumer+`"`) {
			pid = p
		}
	}
	if pid == "" {
		t.Fatalf("no connection named %q: %s", consumer, out)
	}
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("%s ctl close_connection '%s' 'test: cut the consumer'", ctl, pid)).CombinedOutput(); err != nil {
		t.Fatalf("close_connection: %v: %s", err, out)
	}
	ran := map[int][]int{} // task -> deliveries whose run ended
	collect := func(m bus.Message) {
		evs, err := coordinator.DecodeEvents(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Type == wire.EventDone {
				ran[ev.Task] = append(ran[ev.Task], ev.Delivery)
			}
		}
	}
	for len(ran) < tasks {
		select {
		case m := <-events:
			collect(m)
		case <-ctx.Done():
			t.Fatalf("tasks done: %v of %d", ran, tasks)
		}
	}
	// Let a second run of anything show up.
	for deadline := time.After(4 * time.Second); ; {
		select {
		case m := <-events:
			collect(m)
			continue
		case <-deadline:
		}
		break
	}
	var twice []string
	for task, ds := range ran {
		if len(ds) > 1 {
			twice = append(twice, fmt.Sprintf("task %d (deliveries %v)", task, ds))
		}
	}
	// The one task under way at the cut may run twice.
	if len(twice) > 1 {
		t.Fatalf("tasks that waited in the buffer when the consumer's connection was cut ran twice: %s", strings.Join(twice, ", "))
	}
	t.Logf("runs: %v", ran)
}
