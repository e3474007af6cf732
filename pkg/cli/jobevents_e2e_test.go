package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// jobEventLines parses `submit events` output.
func jobEventLines(t *testing.T, out string) []wire.CloudEvent {
	t.Helper()
	var evs []wire.CloudEvent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev wire.CloudEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// checkCloudEvent checks the CloudEvents 1.0 attributes of a job event.
func checkCloudEvent(t *testing.T, ev wire.CloudEvent, job string) wire.JobEventData {
	t.Helper()
	if ev.SpecVersion != "1.0" || ev.ID == "" || !strings.HasPrefix(ev.Source, "/skein/coordinator/") || ev.Subject != job ||
		ev.DataContentType != "application/json" || ev.DataSchema != wire.JobEventSchema || !strings.HasPrefix(ev.Type, "run.skein.job.") {
		t.Fatalf("not a job event of %s: %+v", job, ev)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.Time); err != nil {
		t.Fatalf("event time %q: %v", ev.Time, err)
	}
	var d wire.JobEventData
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.Job.ID != job {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	return d
}

// TestJobEvents: the coordinator publishes a job's lifecycle as
// CloudEvents; `submit events JOB` prints one job's from its submission
// to its end and exits; `submit events --since` follows every job.
func TestJobEvents(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			url := namespaced(t, testenv.Require(t, bk.env))
			cluster(t, url, 1)
			all := start(t, "submit", "events", "--bus", url, "--since", "120")

			ok := submitNoWait(t, "map", "--function", "sleep", "--iterdata", indexedSleeps(20, 0.1), "--bus", url)
			bad := submitNoWait(t, "map", "--function", "sleep", "--iterdata", `[{"x":0.01},{"x":"not a number"}]`, "--bus", url)
			out, errOut, code := submit(t, "events", ok, "--bus", url)
			if code != 0 {
				t.Fatalf("events %s: exit %d: %s", ok, code, errOut)
			}
			evs := jobEventLines(t, out)
			if len(evs) < 2 || evs[0].Type != wire.JobEventSubmitted || evs[len(evs)-1].Type != wire.JobEventDone {
				t.Fatalf("events of %s: want submitted first and done last, got %+v", ok, evs)
			}
			ids := map[string]bool{}
			for _, ev := range evs {
				d := checkCloudEvent(t, ev, ok)
				if ids[ev.ID] {
					t.Fatalf("event id %s twice", ev.ID)
				}
				ids[ev.ID] = true
				if ev.Type != wire.JobEventSubmitted && ev.Type != wire.JobEventProgress && ev.Type != wire.JobEventDone {
					t.Fatalf("unexpected %s in a job that went well", ev.Type)
				}
				if ev.Type == wire.JobEventDone && (d.Job.State != wire.StateDone || d.Job.Done != 20 || d.Result == nil || d.Result.Fetch != "submit result "+ok) {
					t.Fatalf("done event data %s", ev.Data)
				}
			}

			out, errOut, code = submit(t, "events", bad, "--bus", url)
			if code != 0 {
				t.Fatalf("events %s: exit %d: %s", bad, code, errOut)
			}
			evs = jobEventLines(t, out)
			n := len(evs)
			if n < 3 || evs[n-2].Type != wire.JobEventTaskFailed || evs[n-1].Type != wire.JobEventFailed {
				t.Fatalf("events of %s: want task_failed then failed last, got %+v", bad, evs)
			}
			if d := checkCloudEvent(t, evs[n-2], bad); d.Task == nil || *d.Task != 1 || d.Error == nil {
				t.Fatalf("task_failed data %s", evs[n-2].Data)
			}
			if d := checkCloudEvent(t, evs[n-1], bad); d.Job.State != wire.StateFailed || d.Error == nil {
				t.Fatalf("failed data %s", evs[n-1].Data)
			}

			// The follower of every job saw both ends.
			deadline := time.Now().Add(30 * time.Second)
			for {
				var sawOK, sawBad bool
				for _, ev := range jobEventLines(t, all.out.String()) {
					sawOK = sawOK || ev.Subject == ok && ev.Type == wire.JobEventDone
					sawBad = sawBad || ev.Subject == bad && ev.Type == wire.JobEventFailed
				}
				if sawOK && sawBad {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("submit events --since saw the end of job %s: %v, of job %s: %v:\n%s", ok, sawOK, bad, sawBad, all.out.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
