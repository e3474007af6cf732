// Package rabbitmq is the RabbitMQ implementation of bus.Bus, on
// github.com/rabbitmq/amqp091-go. Connect with
//
//	b, err := rabbitmq.Connect(ctx, "amqp://user:pass@host:5672/vhost", rabbitmq.Options{Logger: log})
//
// # Objects on the broker
//
// Work queues are durable quorum queues (classic durable queues on brokers
// older than 3.8, or with Options.QueueType = "classic"), named as given,
// each with a dead-letter queue "<queue>.dead" and the broker's
// x-delivery-limit as a backstop. Events go to the topic exchange
// "<prefix>.events", bound with "#" to a durable stream queue of the same
// name (RabbitMQ 3.9+). Broadcasts go to the topic exchange
// "<prefix>.broadcast"; every Listen binds an exclusive auto-delete
// queue. RPC requests go to the direct exchange "<prefix>.rpc", which
// routes them to the auto-delete queue "<prefix>.rpc.<subject>" of each
// subject (bound under its own name; a requester then needs no write on
// the default exchange, which reaches every queue); replies use direct
// reply-to (amq.rabbitmq.reply-to), and a server answers only there. A
// server takes one request at a time off its queue (basic.qos 1),
// acknowledges it as its handler starts, and runs up to RPCConcurrency
// handlers: a server that is stopped holds one request per subject.
//
// # Delivery
//
// Every Enqueue and Publish waits for publisher confirms. Consumers use
// manual acks and basic.qos(Prefetch, or the Window's size), one AMQP
// channel per Consume. A Window that changes is applied without cancelling
// a consumer that may have messages on their way to it: basic.qos applies
// only to consumers started after it, and a quorum queue returns what is
// on its way to a cancelled consumer, counted as delivered once more. So
// the channel carries AMQP consumers whose prefetches add up to the
// window: it grows by starting one more, and shrinks by cancelling
// consumers once all they may take is in the reader's hands. The acks
// and nacks of a consumer set to go are held until it is cancelled, so
// that it fills with what is on its way; one that does not fill (the
// queue ran dry) is cancelled once quiet for 250 ms or after 5 s, such
// cancels at least 100 ms apart, and then a message on its way may come
// back once.
// Attempt() is 1 + the quorum queue's x-delivery-count (+ the attempts
// carried in a header by a republished copy); on classic queues only the
// redelivered flag is known, so Attempt() is 1 or 2 there.
//
// # Stream subscriptions
//
// RabbitMQ 3.10 has no server-side stream filter, so every subscriber
// would read the whole event stream and filter by subject here. The
// subscriptions of one Bus therefore share one live reader of the
// stream's tail: a subscription catches up from its start position on a
// consumer of its own, then hands over to the tail at an exact offset
// (no gap, no duplicate); a subscription with To reads to its end on its
// own. The tail buffers at most Options.SubscriberBuffer messages per
// subscription and sends one that falls further behind back to a
// consumer of its own until it has caught up again, so a slow reader
// slows only itself and nothing is dropped. Stream deliveries are acked a
// quarter of StreamPrefetch at a time (an ack only grants credit).
//
// # Lease and InProgress
//
// AMQP has no lease: the broker redelivers an unacked message only when
// the consumer's channel or connection closes (or after the broker-wide
// consumer_timeout, 30 minutes by default, which closes the channel). The
// bus therefore keeps the lease itself: a delivery not settled within
// QueueOptions.Lease is nacked back to the queue by the bus (logged), and
// InProgress restarts that timer. A consumer process that dies loses its
// connection, and the broker redelivers at once; a hung handler in a live
// process loses its delivery after Lease. Set consumer_timeout above the
// longest Lease you use.
//
// # Nak, Term, dead letters
//
// Nak(0) on a quorum queue is basic.nack with requeue. Nak with a delay
// republishes the message (with its attempt count) to a classic delay
// queue "<prefix>.delay.<queue>.<ms>ms" whose message TTL dead-letters it
// back into the work queue, then acks the original; delays are rounded up
// to two significant digits. Messages handed back go through the direct
// exchange "<prefix>.requeue", to which the work, dead-letter and delay
// queues are bound under their own names (and no other queue), so that a
// consumer needs no write on the default exchange, which reaches every
// queue of the vhost. Term publishes the message to "<queue>.dead"
// with headers skein-reason, skein-queue, skein-attempt and skein-dead-at,
// then acks it; DeadLetters reads them without removing them. A delivery
// whose Attempt() exceeds MaxAttempts+1 (the consumer was given its last
// chance and did not Term it) is terminated by the bus.
//
// # Reconnection and clusters
//
// Connect takes one URL or the URLs of a cluster's nodes, comma-separated
// (one virtual host). It connects to one node, starting at a random one so
// that programs spread over the nodes; ConnectedURL names it. When the
// connection drops the bus redials — on a list, the node after the one
// lost first, then the others in turn — with exponential backoff between
// rounds (Options.ReconnectMin..ReconnectMax), logs "rabbitmq connection
// lost" and "rabbitmq reconnected" (with the node's URL), and every
// Consume, Subscribe, Listen and Serve resubscribes; stream subscribers
// resume after the last offset they delivered. A publish whose confirm
// did not arrive is sent again on the new connection until its ctx ends:
// nothing is silently lost, and a retried message may arrive twice.
// Requests in flight fail. Each Consume has a connection of its own
// (to the same node when it answers), redialled the same way: a consume
// of a quorum queue whose members are still starting crashes its
// connection (541), and that must not return what other consumers hold.
// A server checks every 2 s that its RPC queue
// still exists, and declares it again when it is gone (on a cluster,
// the dead node's transient queue can be deleted after a server
// subscribed to it again). On a cluster the quorum queues and the event
// stream are replicated on its nodes and survive the loss of one of
// three; the classic delay queues of Nak with a delay live on one node.
//
// # Secrets
//
// Credentials come from the URL, Options.Username/Password, or the
// SKEIN_AMQP_USERNAME / SKEIN_AMQP_PASSWORD environment variables; URLs are
// redacted in logs and errors. Options.TLS configures amqps:// (a CA, a
// client certificate). A refused login wraps bus.ErrUnreachable. A user
// without configure permission on the exchanges and the event stream
// (deploy/rabbitmq) checks passively that they exist.
package rabbitmq
