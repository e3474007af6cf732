package cli_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// TestBrokerBackWithAnEmptyStore: two coordinators and a runtime keep
// serving across a restart of their nats-server that loses its store
// (memory storage, a volume not kept). A job running at that moment
// fails at once with a message that says why (its tasks and events are
// gone), instead of waiting for ever; every job submitted afterwards
// runs, through either coordinator.
//
// Found by trying it: the coordinators followed the new job log from the
// position they had reached on the old one, and a third of the submits
// after the restart failed with "the job log has no spec of job … at
// position …" or "unknown job".
func TestBrokerBackWithAnEmptyStore(t *testing.T) {
	for name, bin := range testenv.NATSServerBins(t) {
		t.Run(name, func(t *testing.T) {
			srv := testenv.StartNATS(t, bin)
			url := namespaced(t, srv.URL())
			start(t, "coordinator", "--bus", url, "--log-level", "info")
			co := start(t, "coordinator", "--bus", url, "--log-level", "info")
			waitOutput(t, co, "coordinator serving", 10*time.Second)
			running := jobRunningAtLoss(t, url)
			srv.Kill()
			srv.WipeStore()
			srv.Restart()

			select {
			case r := <-running:
				if r.code != 3 || !strings.Contains(r.errOut, "came back without its store") {
					t.Fatalf("the job running when the store was lost: exit %d, want 3 (failed) saying why:\n%s", r.code, r.errOut)
				}
			case <-time.After(25 * time.Second):
				t.Fatal("the job running when the store was lost has not ended 25 s after")
			}
			for i := range 12 {
				want := fmt.Sprintf("[%d,%d]\n", i+1, i+2)
				out, errOut, code := submit(t, "map", "--function", "add", "--iterdata", "[1,2]", "--extra-params", fmt.Sprintf(`{"y":%d}`, i), "--bus", url)
				if code != 0 || out != want {
					t.Fatalf("job %d after the store was lost: exit %d, %q (want %q):\n%s", i, code, out, want, errOut)
				}
			}
		})
	}
}

// TestRabbitMQBackWithoutItsData: as TestBrokerBackWithAnEmptyStore, on a
// RabbitMQ node that comes back without its database (its default user is
// made again at boot, so clients reconnect; queues, streams and messages
// are gone). The job running then fails with a message that says why, and
// the coordinator that outlived the loss runs the jobs submitted after it.
//
// Found by trying it: the coordinators went on reading the new job log
// from the offset they had reached on the old one (the offsets of the new
// stream start again at 0), so a job submitted afterwards was accepted and
// then never started, and the job running at the loss waited for ever.
func TestRabbitMQBackWithoutItsData(t *testing.T) {
	amqp, ctl := testenv.PrivateRabbitMQ(t)
	url := namespaced(t, amqp)
	// One coordinator, whose lease outlasts the node's restart (seconds):
	// it still holds the running job when the broker is back, and answers
	// for it. (With two, the job's status can come from the one that does
	// not hold it, which knows nothing of it on the new log: its submit
	// then ends with exit 5, "… the broker lost its data); resubmit it".)
	co := start(t, "coordinator", "--bus", url, "--log-level", "info", "--lease", "2m")
	waitOutput(t, co, "coordinator serving", 20*time.Second)
	running := jobRunningAtLoss(t, url)
	wipe := exec.Command("sh", "-c", ctl+" wipe-broker")
	if out, err := wipe.CombinedOutput(); err != nil {
		t.Fatalf("wiping the broker: %v\n%s", err, out)
	}
	// The coordinator's connections come back one after another, and its
	// API serves again once they have: a grace rides that out.
	waitOutput(t, co, "rabbitmq reconnected", 30*time.Second)
	for i := range 6 {
		want := fmt.Sprintf("[%d,%d]\n", i+1, i+2)
		out, errOut, code := submit(t, "map", "--function", "add", "--iterdata", "[1,2]", "--extra-params", fmt.Sprintf(`{"y":%d}`, i), "--bus", url, "--timeout", "60", "--coordinator-grace", "30s")
		if code != 0 || out != want {
			t.Fatalf("job %d after the broker lost its data: exit %d, %q (want %q):\n%s", i, code, out, want, errOut)
		}
	}
	// The job running at the loss fails, saying why; its end record is
	// on the new stream, below the position its submit waits from, so the
	// submit takes the coordinator's word for it.
	select {
	case r := <-running:
		if r.code != 3 || !strings.Contains(r.errOut, "came back without its store") {
			t.Fatalf("the job running when the broker lost its data: exit %d, want 3 (failed) saying why:\n%s", r.code, r.errOut)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the job running when the broker lost its data has not ended 60 s after the jobs that followed")
	}
}

// ended is how a submit ended: its standard error and exit code.
type ended struct {
	errOut string
	code   int
}

// jobRunningAtLoss starts a runtime on url, checks that a job runs, and
// submits a job of two 30 s tasks; it returns once they run, with the
// channel that hears how that submit ended.
func jobRunningAtLoss(t *testing.T, url string) <-chan ended {
	t.Helper()
	start(t, "runtime", "--bus", url, "--slots", "2", "--log-level", "info")
	if out, errOut, code := submit(t, "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--bus", url); code != 0 || out != "[2,3,4]\n" {
		t.Fatalf("before: exit %d, %q, %s", code, out, errOut)
	}
	running := make(chan ended, 1)
	go func() {
		_, e, c := submit(t, "map", "--function", "sleep", "--iterdata", `[{"x":30,"value":1},{"x":30,"value":2}]`, "--bus", url, "--log-level", "info")
		running <- ended{e, c}
	}()
	waitProgress(t, url, "", 0)
	time.Sleep(time.Second) // the tasks are running
	return running
}
