// Package bus is the message-bus contract Skein runs on, in four small
// interfaces: Queue (a durable work queue with competing consumers),
// Stream (a durable, replayable log of events by subject), Broadcast
// (fire-and-forget notices) and RPC (request/reply). Bus bundles them.
//
// # Implementations
//
// bus/natsbus implements it on NATS JetStream (with an embedded server as
// the default), bus/rabbitmq on RabbitMQ. bus/dial opens either from a
// URL. bus/bustest is the conformance suite every implementation passes:
// a bus' test declares its features and calls bustest.Run.
//
// # Delivery
//
// Queues deliver at least once. A consumer settles each Delivery exactly
// once: Ack (done), Nak (redeliver, optionally after a delay) or Term
// (poison: never redeliver; a bus with a dead-letter queue moves it
// there). InProgress extends the lease of a long task. A delivery left
// unsettled when its lease runs out, or when its consumer dies, is
// redelivered with a higher Attempt. Skein relies on this for lost
// runtimes and makes duplicates harmless: the coordinator records the
// first terminal event of each task.
//
// Optional abilities are separate interfaces found by type assertion:
// Purger (drop one job's queued tasks) and Limits (largest message).
package bus
