// Package bustest is the conformance suite every bus.Bus implementation
// passes, in the manner of watermill's pubsub/tests and testing/fstest.
//
// A backend's test declares what it supports and calls Run:
//
//	func TestConformance(t *testing.T) {
//		url := testenv.Require(t, testenv.AMQPURL)
//		bustest.Run(t, bustest.Features{StopBroker: stop, StartBroker: start},
//			func(t *testing.T) bus.Bus { b := connect(t, url); t.Cleanup(func() { b.Close() }); return b })
//	}
//
// # What it checks
//
// Work queues: enqueue/consume with keys and headers; competing consumers
// (each message exactly once across consumers when all ack, load spread);
// Ack, Nak, Nak with delay and Term, and ErrSettled on a second settle;
// InProgress keeping a delivery past its lease; redelivery after the lease
// runs out, after the consumer's ctx ends and after its bus is closed
// (Attempt() == 2); MaxAttempts (one last delivery with Attempt() >
// MaxAttempts, then no more). Streams: "*" and ">" wildcards, per-subject
// order with concurrent publishers, replay with Since; positions
// (Message.Seq strictly increasing and equal to what PublishSeq returned,
// also with concurrent publishers), replay From a position, and To a
// position (closed there, also when nothing matches), and reading a log to
// a mark through a long run of other subjects' messages. Broadcast with
// patterns. Request/reply, ErrNoResponders, *bus.RemoteError, load shared
// by two servers, a request answered while another one's handler is still
// busy. Messages of exactly MaxMessageSize() bytes pass and one
// byte more fails with ErrTooLarge. After Close, channels are closed and
// calls return ErrClosed. Optional features: dead-letter inspection,
// Purge (of one key only, even while the queue's consumer holds another
// key's deliveries), and a broker restart in the middle of a stream of publishes and
// consumes, after which nothing is lost.
//
// # Running in parallel
//
// Every subtest uses queue and subject names with a random suffix and runs
// in parallel with the others against one broker. The restart test runs
// alone, after the rest. -short scales the load down; Features.Slow
// stretches every wait.
package bustest
