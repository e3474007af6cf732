// Package natsbus implements bus.Bus on NATS JetStream.
//
// # Layout
//
// With the default namespace "skein" (set another with Options.Prefix, or
// "?ns=NAME" on a bus URL through bus/dial):
//
//	SKEIN_TASKS   work-queue stream, subjects skein.task.<pool>.<job>;
//	              one durable pull consumer "q-<pool>" per pool, shared by
//	              every runtime of the pool (AckWait = the lease,
//	              MaxDeliver = MaxAttempts+1)
//	SKEIN_EVENTS  limits stream (24h), subjects skein.ev.>: task events
//	              (task.<job>), the job log (job.<job>.spec, job.<job>.end)
//	              and reducer feeds (feed.<job>.<group>); subscribers are
//	              ordered consumers started by time
//	skein.bc.>    core NATS broadcasts (progress, cancel)
//	skein.rpc.>   core NATS request/reply in the queue group "skein"
//
// # Embedded server
//
// StartEmbedded runs a NATS server with JetStream in this process (in a
// temporary directory unless told otherwise), with in-process connections
// and optionally a network listener. It is what `submit` uses with no bus
// configured, and what `coordinator --embedded-listen` serves.
//
// # Acks
//
// An Ack is a fire-and-forget publish to the server (not confirmed): a
// lost ack leads to a redelivery, never to a lost task, and the
// coordinator ignores the duplicate outcome.
package natsbus
