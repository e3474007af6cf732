package dashboard

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// A job's view names the task whose failure ended it, task 0 included,
// and no task when the job failed of itself (wire.JobStatus.FailedTask
// -1: its compute backend refused it, or its broker lost its store).
func TestViewFailedTask(t *testing.T) {
	boom := &wire.TaskError{Kind: wire.ErrUser, Message: "boom"}
	for _, tc := range []struct {
		name string
		st   wire.JobStatus
		want string // the failed_task field's JSON; "" when absent
	}{
		{"task 0", wire.JobStatus{State: wire.StateFailed, Error: boom, FailedTask: 0}, "0"},
		{"task 7", wire.JobStatus{State: wire.StateFailed, Error: boom, FailedTask: 7}, "7"},
		{"the job itself", wire.JobStatus{State: wire.StateFailed, Error: boom, FailedTask: -1}, ""},
		{"no failure", wire.JobStatus{State: wire.StateDone}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(view(coordinator.JobInfo{Status: tc.st}, time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(b, &fields); err != nil {
				t.Fatal(err)
			}
			if got := string(fields["failed_task"]); got != tc.want {
				t.Errorf("failed_task = %q, want %q (view %s)", got, tc.want, b)
			}
		})
	}
}
