// Package backend decides how function runtimes come to exist for a job.
//
// The coordinator always publishes a job's tasks on its pool's work queue
// (bus.Queue); runtimes pull them from there and report their events on the
// bus. A compute backend never carries tasks or results: it only makes sure
// that, for a job, something is there to pull.
//
// # Implementations
//
//   - local (written with the coordinator): worker goroutines or processes
//     on this machine, sized by --workers.
//   - workers (this package, [Workers]): runtimes started elsewhere (a
//     Kubernetes Deployment scaled by KEDA on queue depth, Code Engine,
//     VMs) connect to the bus and pull; Dispatch does nothing.
//   - openwhisk (package backend/openwhisk): Dispatch invokes the runtime
//     action non-blocking ceil(Tasks/Batch) times; each activation drains
//     up to Batch tasks from the pool's queue and returns.
//
// # Contract
//
// Dispatch is called by the coordinator after the job's tasks are on the
// queue (or while they are being published: a runtime that finds the
// queue empty waits a short idle time before it gives up). It may be called
// again for the same job with the number of tasks still pending (retries,
// tasks lost with a runtime); each call means "make sure runtimes exist to
// pull about Tasks more tasks". Implementations are safe for concurrent
// use: Dispatch may run for several jobs at once, and Close may be called
// while a Dispatch is running (that Dispatch then returns ErrClosed).
package backend
