package coordinator

import (
	"testing"

	"github.com/skeinrun/skein/pkg/wire"
)

func TestAttempts(t *testing.T) {
	retryable := &wire.TaskError{Kind: wire.ErrUser, Message: "x", Retryable: true}
	final := &wire.TaskError{Kind: wire.ErrUser, Message: "x"}
	cancelled := &wire.TaskError{Kind: wire.ErrCancelled, Message: "x", Retryable: true}
	ev := func(typ wire.EventType, attempt int, e *wire.TaskError) *wire.Event {
		return &wire.Event{Type: typ, Attempt: attempt, Error: e}
	}
	type step struct {
		ev   *wire.Event
		want outcome
		next int
	}
	cases := []struct {
		name    string
		retries int
		steps   []step
		status  wire.JobStatus
	}{
		{"start then done", 0, []step{{ev(wire.EventStarted, 1, nil), started, 0}, {ev(wire.EventDone, 1, nil), succeeded, 0}}, wire.JobStatus{Done: 1}},
		{"done twice: first wins", 0, []step{{ev(wire.EventDone, 1, nil), succeeded, 0}, {ev(wire.EventDone, 1, nil), ignored, 0}, {ev(wire.EventFailed, 1, final), ignored, 0}}, wire.JobStatus{Done: 1}},
		{"retry then done", 2, []step{{ev(wire.EventStarted, 1, nil), started, 0}, {ev(wire.EventFailed, 1, retryable), retried, 2}, {ev(wire.EventStarted, 2, nil), started, 0}, {ev(wire.EventDone, 2, nil), succeeded, 0}}, wire.JobStatus{Done: 1, Retried: 1}},
		{"retries used up", 1, []step{{ev(wire.EventFailed, 1, retryable), retried, 2}, {ev(wire.EventFailed, 2, retryable), failed, 0}}, wire.JobStatus{Failed: 1, Retried: 1}},
		{"final error is not retried", 3, []step{{ev(wire.EventFailed, 1, final), failed, 0}}, wire.JobStatus{Failed: 1}},
		{"cancelled is not retried", 3, []step{{ev(wire.EventFailed, 1, cancelled), failed, 0}}, wire.JobStatus{Failed: 1}},
		{"stale failure ignored", 3, []step{{ev(wire.EventFailed, 1, retryable), retried, 2}, {ev(wire.EventFailed, 1, retryable), ignored, 0}}, wire.JobStatus{Retried: 1}},
		{"older attempt's done counts", 3, []step{{ev(wire.EventFailed, 1, retryable), retried, 2}, {ev(wire.EventDone, 1, nil), succeeded, 0}}, wire.JobStatus{Done: 1, Retried: 1}},
		{"unpublished attempt ignored", 3, []step{{ev(wire.EventDone, 2, nil), ignored, 0}, {ev(wire.EventFailed, 5, final), ignored, 0}, {ev(wire.EventDone, 0, nil), ignored, 0}, {ev(wire.EventStarted, 2, nil), ignored, 0}}, wire.JobStatus{}},
		{"started of old attempt ignored", 3, []step{{ev(wire.EventFailed, 1, retryable), retried, 2}, {ev(wire.EventStarted, 1, nil), ignored, 0}}, wire.JobStatus{Retried: 1}},
		{"running failure leaves running", 3, []step{{ev(wire.EventStarted, 1, nil), started, 0}, {ev(wire.EventFailed, 1, final), failed, 0}}, wire.JobStatus{Failed: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAttempts(1)
			var st wire.JobStatus
			for k, s := range c.steps {
				o, next := a.apply(0, s.ev, c.retries, &st)
				if o != s.want || next != s.next {
					t.Fatalf("step %d (%s attempt %d): got %v next %d, want %v next %d", k, s.ev.Type, s.ev.Attempt, o, next, s.want, s.next)
				}
			}
			if st != c.status {
				t.Fatalf("status %+v, want %+v", st, c.status)
			}
		})
	}
}
