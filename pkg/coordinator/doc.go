// Package coordinator accepts jobs, publishes their tasks and follows
// their events to the end. It never polls storage.
//
// # A job's life
//
// Submit validates the spec (Validate names every bad field), expands
// iterdata with Lithops' rules (SplitElement: an object is keyword
// arguments, a list positional ones, anything else the single argument;
// extra_params merged in; storage URLs through Hooks.Expand), records the
// spec on the job log, subscribes to the job's events and publishes the
// tasks, invoke_pool_threads publications in flight. The job's event loop
// records the first terminal event of each task (delivery is at least
// once: duplicates and stale attempts change nothing), re-publishes
// failed tasks while --retries allows, broadcasts progress, and ends the
// job done, failed (with the task's error), timed out, or cancelled. A job
// that ends early has its queued tasks purged and its running ones
// cancelled.
//
// # Streaming reduce
//
// For mapreduce jobs the aggregator forwards each map result to its reduce
// group's feed subject as it lands, batched, off the event loop. In
// streaming mode the group's reducer task is queued with the first result;
// in barrier mode once every map is done. The last feed message carries
// the count. The feed is durable and replayable: a reducer that crashes is
// redelivered and reads everything again.
//
// # State
//
// Job state lives in memory for speed; the spec is on the job log and
// every event on the durable event stream. Readers of the stream work by
// stream position, never by clock or quiet: Submit records the spec and
// its position (JobStatus.From), where the job's event subscription, its
// reducers' feeds and a client's wait start; the deadline is this
// coordinator's clock, recorded in the spec. Recover, called by a
// coordinator that starts, records a mark on the job log and reads the log
// until the mark comes back, then takes up every job that has not ended,
// rebuilding its state by replaying its events from its spec's position;
// it re-publishes tasks without outcome only once that replay has handled
// a mark recorded on the job's own event subject.
package coordinator
