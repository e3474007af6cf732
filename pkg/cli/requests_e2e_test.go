package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skeinrun/skein/internal/testenv"
)

// TestSubmitRequestsPerJob: `submit map` on a broker asks the coordinator
// one submit and one result, and nothing else: the submit's answer holds
// the job's position on the stream, from which the wait reads the job's
// end, so no status request follows it. Each request is a round trip on
// the path of every job, and most of a one-task job's time.
func TestSubmitRequestsPerJob(t *testing.T) {
	raw := testenv.Require(t, testenv.NATSURL)
	url := namespaced(t, raw)
	ns := url[strings.LastIndex(url, "ns=")+len("ns="):]
	cluster(t, url, 1)

	nc, err := nats.Connect(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seen := make(chan string, 64)
	// A plain subscription sees every request; the coordinator's queue
	// group still gets each one.
	sub, err := nc.Subscribe(ns+".rpc.api.>", func(m *nats.Msg) { seen <- strings.TrimPrefix(m.Subject, ns+".rpc.") })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, mode := range [][]string{{"--quiet"}, {"--progress", "none"}, {"--progress", "lines"}} {
		t.Run(strings.Join(mode, " "), func(t *testing.T) {
			args := append([]string{"map", "--function", "add", "--iterdata", `[1,2,3]`, "--extra-params", `{"y":1}`, "--bus", url}, mode...)
			out, errOut, code := submit(t, args...)
			if code != 0 || out != "[2,3,4]\n" {
				t.Fatalf("exit %d, stdout %q; stderr:\n%s", code, out, errOut)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the last request's delivery to this subscription
			count := map[string]int{}
		drain:
			for {
				select {
				case s := <-seen:
					count[s]++
				default:
					break drain
				}
			}
			want := map[string]int{"api.submit": 1, "api.result": 1}
			if len(count) != len(want) || count["api.submit"] != 1 || count["api.result"] != 1 {
				t.Fatalf("requests to the coordinator: %v, want %v", count, want)
			}
		})
	}
}
