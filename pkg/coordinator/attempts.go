package coordinator

import "github.com/skeinrun/skein/pkg/wire"

// Task states.
const (
	stQueued uint8 = iota
	stRunning
	stDone
	stFailed
)

// attempts is the one state machine of a set of tasks: a job's map (or
// call) tasks, or its reducers. Each task is queued, running, done or
// failed, and has a current attempt (the newest one published, from 1).
//
// Events move it:
//   - started of the current attempt: queued → running;
//   - done of any attempt published so far: → done, for good (the first
//     terminal event wins; delivery is at least once, so a task that ran
//     twice reports twice);
//   - failed of the current attempt: queued again with the next attempt
//     while the error is retryable and retries are left, else failed.
//
// Everything else changes nothing: events after a task's end, a failure
// of an older attempt (a newer one is already queued), and any event of
// an attempt that was never published (a forged event, or one of another
// job that had the same id).
type attempts struct {
	state   []uint8
	attempt []uint8 // current attempt - 1
}

func newAttempts(n int) attempts {
	return attempts{state: make([]uint8, n), attempt: make([]uint8, n)}
}

// outcome is what an event meant to a task.
type outcome uint8

const (
	ignored   outcome = iota
	started           // now running
	succeeded         // done: keep its result
	retried           // failed; queue attempt next
	failed            // failed for good
)

// apply records ev for task i and updates the running, done, failed and
// retried counters of st. retries is the job's retry budget. For retried,
// next is the attempt to publish.
func (a *attempts) apply(i int, ev *wire.Event, retries int, st *wire.JobStatus) (o outcome, next int) {
	s := a.state[i]
	if s == stDone || s == stFailed {
		return ignored, 0
	}
	if !a.published(i, ev.Attempt) {
		return ignored, 0
	}
	cur := int(a.attempt[i]) + 1
	leave := func(to uint8) {
		if s == stRunning {
			st.Running--
		}
		a.state[i] = to
	}
	switch ev.Type {
	case wire.EventStarted:
		if s == stQueued && ev.Attempt == cur {
			a.state[i] = stRunning
			st.Running++
			return started, 0
		}
	case wire.EventDone:
		leave(stDone)
		st.Done++
		return succeeded, 0
	case wire.EventFailed:
		if ev.Attempt < cur {
			return ignored, 0 // a newer attempt is queued
		}
		if e := ev.Error; e != nil && e.Retryable && e.Kind != wire.ErrCancelled && cur <= retries {
			leave(stQueued)
			a.attempt[i]++
			st.Retried++
			return retried, cur + 1
		}
		leave(stFailed)
		st.Failed++
		return failed, 0
	}
	return ignored, 0
}

// published reports whether attempt of task i was ever published.
func (a *attempts) published(i, attempt int) bool {
	return attempt >= 1 && attempt <= int(a.attempt[i])+1
}

// queued lists the tasks that have no outcome and are not known to run,
// with the attempt each would be published with.
func (a *attempts) queued() (tasks, attempt []int) {
	for i, s := range a.state {
		if s == stQueued {
			tasks = append(tasks, i)
			attempt = append(attempt, int(a.attempt[i])+1)
		}
	}
	return tasks, attempt
}
