package cli_test

import (
	"fmt"
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
			start(t, "runtime", "--bus", url, "--slots", "2", "--log-level", "info")
			if out, errOut, code := submit(t, "map", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--bus", url); code != 0 || out != "[2,3,4]\n" {
				t.Fatalf("before: exit %d, %q, %s", code, out, errOut)
			}

			type res struct {
				errOut string
				code   int
			}
			running := make(chan res, 1)
			go func() {
				_, e, c := submit(t, "map", "--function", "sleep", "--iterdata", `[{"x":30,"value":1},{"x":30,"value":2}]`, "--bus", url, "--log-level", "info")
				running <- res{e, c}
			}()
			waitProgress(t, url, "", 0)
			time.Sleep(time.Second) // the tasks are running
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
