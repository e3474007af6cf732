// Package runtime is Skein's function runtime: a worker that pulls tasks
// from a pool's queue, runs them, and reports their outcome on the bus.
//
// # Life of a task
//
// The runtime takes every delivery off the bus as soon as it arrives and
// holds it until a slot is free; the bus never hands it more than the
// runtime's window (see below). A slot takes a held delivery, decodes the
// task (a malformed one is terminated with a logged reason: it cannot
// block the queue), and runs the function under the task's deadline. One
// heartbeat loop renews the lease of tasks held or running longer than a
// third of it, so that a task is never redelivered for waiting in the
// buffer (TestBufferedTaskKeepsItsLease), and publishes a "started" event
// for tasks still running after StartedAfter (20ms), so short tasks cost
// a single event. The done or failed event goes to a
// pool of publishers that batch the events already waiting for the same
// job into one message; a delivery is acked only after its event is safe
// on the bus. A panic becomes a failed event with its stack; an unknown
// function is a non-retryable failure that names it.
//
// # Short Python calls: pipelined on a slot
//
// On a host that pipelines (pyhost: each slot's interpreter takes a call
// while another runs, and runs them in order), a slot whose recent calls
// were short hands it the next task at once, in a worker of its own, and
// goes on to take the next; the host queues it behind the call running,
// so that the slot costs no round trip to its interpreter per call. Each
// task keeps its own context (timeout, cancellation), lease, log, result
// and event. The work queued on a slot is bounded by 2 ms at the longest
// of its last 8 calls (at most 16 calls); calls longer than that run one
// at a time, and a slot whose call runs past 2 ms takes nothing more until
// it is done, so that tasks do not pile up behind a long call while
// another slot is free (see pipeline.go). A task's deadline counts from
// when the slot took it, its time queued behind another included.
//
// A delivery seen more than MaxAttempts times (its runtimes kept dying)
// is reported lost and terminated.
//
// # How many tasks a runtime holds
//
// The window (bus.Window) bounds the tasks a runtime holds: running,
// waiting for a slot, and finished but not yet acked. Unless Prefetch fixes
// it (Slots+Prefetch), a pacer sizes it by Little's law from what the
// runtime observes: the tasks' run time (the median of the last few),
// the time from a task's end to its ack, and the ack's round trip. A
// flood of no-ops gets a deep window (up to 1,024), so that the broker's
// round trips overlap; tasks of half a second get a slot's worth and a
// spare, so that long tasks stay spread over runtimes. It starts at twice
// the slots, before anything was observed.
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
