// Package wire is Skein's wire format: the job model (JobSpec, Task,
// Event, JobStatus, Feed) and the msgpack envelopes that carry it.
//
// # Envelopes
//
// Every message is a msgpack map {"v": Version, "k": kind, "b": body}.
// Decode refuses another version (ErrVersion) and anything that is not an
// envelope of the expected kind (ErrMalformed), so a runtime can reject a
// bad task to the dead-letter queue with a reason instead of crashing.
//
// # User values
//
// Arguments and results are JSON text (Value) inside the msgpack body:
// they come out exactly as they went in (integers stay integers), whatever
// language produced them.
package wire
