package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Job tells a backend how much work a job put on which pool's queue and
// what the runtimes that pull it need.
type Job struct {
	// ID is the job id (tasks on the queue carry it as their key).
	ID string
	// Pool names the work queue the tasks are on.
	Pool string
	// Tasks is the number of tasks to be pulled by this dispatch (> 0).
	Tasks int
	// PoolThreads bounds the concurrent invocations a backend makes for
	// this job (invoke_pool_threads). Zero means the backend's default.
	PoolThreads int
	// MemoryMB is the memory a runtime needs (runtime_memory). Zero means
	// the backend's default.
	MemoryMB int
	// TimeoutMS is one task attempt's limit (timeout). Zero means the
	// backend's default.
	TimeoutMS int64
	// Queue says which of the pool's queues the tasks are on: "" (the
	// runtimes pull both, as they do by default), "tasks" (map and call
	// tasks; the coordinator dispatches reducers apart) or "reduce"
	// (reducers: runtimes that pull only the reduce queue). A backend
	// whose runtimes always pull both may ignore it.
	Queue string
}

// Validate reports every bad field of j.
func (j Job) Validate() error {
	var errs []string
	if j.ID == "" {
		errs = append(errs, "ID is empty")
	}
	if j.Pool == "" {
		errs = append(errs, "Pool is empty")
	}
	if j.Tasks <= 0 {
		errs = append(errs, fmt.Sprintf("Tasks is %d, want > 0", j.Tasks))
	}
	if j.PoolThreads < 0 {
		errs = append(errs, fmt.Sprintf("PoolThreads is %d, want >= 0", j.PoolThreads))
	}
	if j.MemoryMB < 0 {
		errs = append(errs, fmt.Sprintf("MemoryMB is %d, want >= 0", j.MemoryMB))
	}
	if j.TimeoutMS < 0 {
		errs = append(errs, fmt.Sprintf("TimeoutMS is %d, want >= 0", j.TimeoutMS))
	}
	if j.Queue != "" && j.Queue != "tasks" && j.Queue != "reduce" {
		errs = append(errs, fmt.Sprintf("Queue is %q, want \"\", \"tasks\" or \"reduce\"", j.Queue))
	}
	if len(errs) > 0 {
		return fmt.Errorf("backend: job %q: %s", j.ID, strings.Join(errs, "; "))
	}
	return nil
}

// Backend makes runtimes exist to pull a job's tasks from its pool's queue.
//
// Dispatch and Close are safe for concurrent use. Dispatch returns once
// the backend has done what it does for the job (for openwhisk: every
// invocation accepted by the controller), not when the tasks are done: the
// coordinator learns that from the events on the bus. A Dispatch error
// means part of the job may have no runtime to pull it; the coordinator
// may call Dispatch again with the tasks still pending.
type Backend interface {
	Dispatch(ctx context.Context, job Job) error
	// Close releases the backend's resources. Dispatch calls after Close
	// return ErrClosed.
	Close() error
}

// ErrClosed is returned by Dispatch on a closed backend.
var ErrClosed = errors.New("backend: closed")

// Workers is the backend for runtimes started elsewhere (a Kubernetes
// Deployment scaled on queue depth, Code Engine, VMs): they are connected
// to the bus and pull from the pool's queue by themselves, so Dispatch only
// checks the job and returns.
type Workers struct{ closed chan struct{} }

// NewWorkers returns the workers backend.
func NewWorkers() *Workers { return &Workers{closed: make(chan struct{})} }

// Dispatch validates job and returns: the tasks are already on the queue.
func (w *Workers) Dispatch(ctx context.Context, job Job) error {
	select {
	case <-w.closed:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("backend: workers: dispatch job %q: %w", job.ID, err)
	}
	return job.Validate()
}

// Close marks the backend closed. It is idempotent.
func (w *Workers) Close() error {
	select {
	case <-w.closed:
	default:
		close(w.closed)
	}
	return nil
}
