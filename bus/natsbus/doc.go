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
// # Credentials and roles
//
// Options take a user and password, a token, an NKEY seed file or a
// .creds file, and a TLS configuration (CA, client certificate); bus/dial
// fills them from the command line's flags and variables. InboxPrefix
// puts the connection's replies (API replies, JetStream acks and pull
// deliveries) under a prefix of its own, so that a server with per-role
// users (deploy/nats) lets each read only its own. A publish or request
// the server refuses fails at once with ErrDenied (wrapping
// bus.ErrUnreachable) rather than waiting for a reply that never comes;
// Serve answers only on reply subjects under "_INBOX.".
//
// # Embedded server
//
// StartEmbedded runs a NATS server with JetStream in this process (in a
// temporary directory unless told otherwise), with in-process connections
// and optionally a network listener. It is what `submit` uses with no bus
// configured, and what `coordinator --embedded-listen` serves.
//
// # Supported servers
//
// nats-server 2.9.10 (Debian 12's package, the oldest tested) to the
// version of the nats-server module in go.mod (2.15.3, what the embedded
// server runs, the newest tested). scripts/services/nats.sh starts both
// and the conformance suite runs against each, and against the embedded
// server. Below 2.9.10 nothing is tested; Options and the streams use no
// feature newer than 2.9 (Term's reason needs 2.10.4 and is not sent).
//
// # Settles
//
// Ack, Nak, Term and InProgress each wait for the server's reply (Ack is
// jetstream's DoubleAck; the others are the same request with their own
// body: nats-server answers every acknowledgement that carries a reply
// subject), bounded by ctx (or 5s when ctx has no deadline). A settle that
// fails leaves the delivery unsettled: try again, or let its lease run
// out. A confirmed Ack means the consumer recorded it; on a work-queue
// stream the server then removes the message asynchronously (see below).
//
// # Purge
//
// Purge removes one key's messages (one job's tasks) from a queue by
// deleting them one by one, in ascending order (parallel deletes trip a
// 2.9.10 bookkeeping bug that hides messages from lookups by subject):
// about 130–200 µs a message on a 2-core machine, 26 s for 200,000; a key
// with nothing left costs one request. A subject-filtered stream purge
// would be one request, but on every supported version it damages the
// queue's shared consumer: before 2.9.12 it moves it past every pending
// message of every other key, and from 2.10.11 to at least 2.15.3 it
// makes it forget the unsettled deliveries of other keys at the next ack
// (purge.go).
//
// # Broker crashes
//
// After a SIGKILL of nats-server 2.9.10 in the middle of a job
// (TestBrokerKilledMidJob), messages already acked can come back:
// 2.9.10's file store records deletions in an index file written on a
// timer, so the deletions of the last moments before the crash are
// lost, while the consumer's state, flushed separately, may keep the acks.
// Such messages lie below the consumer's ack floor: the server never
// delivers them again and, the stream being a work queue, never removes
// them (7 to 102 of 2,000 in our runs; none on 2.15.2, whose file store
// writes deletions as tombstones in the message blocks). Killed early,
// before the consumer state is flushed either, 2.9.10 delivers every
// message acked before the crash again (with Attempt() 1). Either way the
// coordinator's Purge at the end of a job removes what is left of that
// job. On both versions the deliveries that were unsettled at the crash,
// or whose acks were lost with it, are delivered again, sometimes with
// Attempt() 1: runtimes settle such deliveries like any other, and the
// coordinator keeps the first outcome of each task. And an ack the server
// applied just before the crash may fail at the client, its reply lost:
// the message is gone from the stream and never comes again, the task
// having run (its runtime logs the failed settle after its result went
// out).
//
// # Windows
//
// A queue consumer pulls with requests of its own for the room left in
// its window (QueueOptions.Prefetch or Window): deliveries handed out and
// not yet settled, plus messages asked for and not yet arrived, never
// exceed it, and nothing waits unrenewed in a client-side buffer. A new
// request goes out once a quarter of the window is free; an empty queue
// parks one request for up to a second (the server's expiry is 0.9 s, so
// that a request left by a consumer that died is gone before a one-second
// lease runs out). A request whose end (the server's 408) has not come
// after the second lapses: its room goes back to the window, but its
// subscription stays until the 408 comes, or for 10 s, and what the
// server still sends to it is delivered (beyond the window for a
// moment). On a cluster a consumer leader on another node learns late
// that a request's inbox has nobody left, and a message it sent there
// came back only after its lease. Each request has an inbox subscription of its own, and
// its messages are handed over from that subscription's callback: the
// JetStream library's Fetch did the same through two more goroutines, a
// timer and a metadata parse per message.
//
// # Publishing tasks
//
// Enqueue publishes a batch with reply subjects under one inbox
// subscription of the connection and waits for the tasks stream's
// acknowledgement of every message: a counter and a channel per batch,
// and a successful acknowledgement recognised by its first bytes. The
// library's asynchronous publisher kept a future per message and parsed
// each acknowledgement as JSON. A lost connection fails the batches
// waiting; the caller publishes them again.
//
// # Consumers that fail
//
// A pull that fails (the durable consumer deleted, heartbeats missing,
// the stream gone) is retried with exponential backoff (100 ms doubling to
// 2 s, reset by the next message), opening the queue's consumer again,
// and logged once per streak of failures and once on recovery.
//
// # Clusters
//
// Connect takes the URLs of a cluster's nodes, comma-separated, and
// Options.Replicas (dial: ?replicas=3) replicates the streams and the
// queues' durable consumers. When the node a bus is connected to dies,
// the client reconnects to another; the streams and consumers that node
// led elect a new leader within seconds. Settles (Ack, Nak, Term,
// InProgress) answered "no responders" meanwhile are sent again until
// their ctx ends (5 s without a deadline), and take effect on the new
// leader (TestClusterSettleDuringElection); publishes fail and their
// callers retry. A stream subscription's ordered consumer (R1) may have lived on
// the dead node, or be recreated there by the library's own recovery,
// which retries one consumer name forever: Subscribe lets the library try
// once and otherwise makes a new ordered consumer after the last message
// delivered (TestNodeLossMidJobNATS in internal/cluster found the hang).
//
// # Serve
//
// Each request is handled on its own goroutine, at most 64 at once per
// Serve; handlers' ctx ends with Serve's ctx or Close, which wait for
// them.
package natsbus
