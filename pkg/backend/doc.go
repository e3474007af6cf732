// Package backend decides how function runtimes come to exist for a job.
//
// The coordinator always publishes a job's tasks on its pool's work queue
// (bus.Queue); runtimes pull them from there and report their events on the
// bus. A compute backend never carries tasks or results: it only makes sure
// that, for a job, something is there to pull.
//
// # Implementations
//
//   - local (package backend/local): a runtime inside the coordinator's
//     process, sized by --workers; Dispatch only checks the job.
//   - workers (this package, [Workers]): runtimes started elsewhere (a
//     Kubernetes Deployment scaled by KEDA on queue depth, Code Engine,
//     VMs) connect to the bus and pull; Dispatch does nothing.
//   - openwhisk (package backend/openwhisk): Dispatch invokes the runtime
//     action non-blocking ceil(Tasks/Batch) times; each activation drains
//     up to Batch tasks from the pool's queue and returns.
//
// # Contract
//
// The coordinator program (pkg/cli) calls Dispatch from the coordinator's
// Hooks.Published (Job.Queue "tasks"): once with all of a job's tasks when
// they are all on the queue, or when the job's backlog (at most
// coordinator.Config.JobBacklog, following the job's pace) is full (the
// rest follow as earlier ones end), then
// with Tasks 1 for each task enqueued later (a retry);
// and from Hooks.PublishedReduce (Job.Queue "reduce") with Tasks 1 for
// each reducer put on the pool's reduce queue. Each call means "make sure
// runtimes exist to pull about Tasks more tasks of that queue" (openwhisk
// gives a reducer an activation of its own). A Dispatch error fails the
// job. Tasks lost with a runtime are redelivered
// by the bus but not dispatched again. Implementations are safe for
// concurrent use: Dispatch may run for several jobs at once, and Close may
// be called while a Dispatch is running (that Dispatch then returns
// ErrClosed).
package backend
