// Package runtime is Skein's function runtime: a worker that pulls tasks
// from a pool's queue, runs them, and reports their outcome on the bus.
//
// # Life of a task
//
// A slot takes a delivery, decodes the task (a malformed one is
// terminated with a logged reason: it cannot block the queue), and runs
// the function under the task's deadline. One heartbeat loop renews the
// lease of tasks running longer than a third of it and publishes a
// "started" event for tasks still running after StartedAfter (20ms), so
// short tasks cost a single event. The done or failed event goes to a
// pool of publishers that batch the events already waiting for the same
// job into one message; a delivery is acked only after its event is safe
// on the bus. A panic becomes a failed event with its stack; an unknown
// function is a non-retryable failure that names it.
//
// A delivery seen more than MaxAttempts times (its runtimes kept dying)
// is reported lost and terminated.
//
// # Reducers
//
// A reduce task runs beside the slots (it mostly waits): the Reducer reads
// its group's feed from the job's start, so a redelivered reducer sees
// every result again, drops duplicates by map index, and hands results to
// a fold or stream reducer as they arrive, or assembles the list for a
// list reducer. Each input's arrival time goes into the reduce event.
//
// # Cancellation
//
// Runtimes listen for cancel notices: running tasks of a cancelled job are
// stopped, and its queued tasks are dropped when they arrive.
package runtime
