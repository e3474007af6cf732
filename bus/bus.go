package bus

import (
	"context"
	"errors"
	"time"
)

// Message is what travels on a bus. Data is opaque to the bus (Skein puts
// msgpack envelopes in it, see pkg/wire). Header carries small string
// metadata such as trace context; keys are case-sensitive.
type Message struct {
	// Subject is the topic the message was published on (streams and
	// broadcasts) or the queue's routing key (queues). Set by the bus on
	// received messages.
	Subject string
	// Key groups queue messages (Skein uses the job id) so that a bus that
	// supports it can purge one job's pending tasks (see Purger).
	Key    string
	Header map[string]string
	Data   []byte
	// ID, when set on a published message, lets a bus that supports it
	// drop a duplicate publish of the same ID within its deduplication
	// window (JetStream's Nats-Msg-Id). Optional.
	ID string
	// Time is when the bus stored the message; set on received stream
	// messages. It is the broker's clock: good for display, never for
	// deciding where a replay starts (use Seq).
	Time time.Time
	// Seq is the message's position in the stream, set on every received
	// stream message: strictly increasing in stream order across all
	// subjects of the stream, never 0. Hand it back in
	// SubscribeOptions.From to replay from this message.
	Seq uint64
}

// Delivery is one message taken from a Queue. Exactly one of Ack, Nak or
// Term settles it; later calls return ErrSettled. InProgress may be called
// any number of times before that. All methods are safe for concurrent use.
type Delivery interface {
	Message() Message
	// Attempt is 1 for the first delivery and counts redeliveries.
	Attempt() int
	// Ack removes the message from the queue. It returns after the broker
	// has confirmed the ack where the protocol allows it.
	Ack(ctx context.Context) error
	// Nak returns the message to the queue for redelivery after delay.
	Nak(ctx context.Context, delay time.Duration) error
	// InProgress extends the lease: the message is not redelivered while
	// the consumer keeps calling it within the queue's lease.
	InProgress(ctx context.Context) error
	// Term removes the message without redelivery (poison). A bus with a
	// dead-letter queue moves it there with reason.
	Term(ctx context.Context, reason string) error
}

// BatchAcker is implemented by buses that acknowledge several deliveries
// more cheaply together than one by one (one confirmation for the lot).
// AckAll acks each of ds, which the bus itself handed out, as Ack would,
// and returns one error per delivery (nil: acked). A delivery whose ack
// failed is left unsettled: Ack may be called on it again.
type BatchAcker interface {
	AckAll(ctx context.Context, ds []Delivery) []error
}

// Revocable is implemented by deliveries that the broker can take back
// before they are settled: RabbitMQ returns a consumer's unsettled
// messages to their queue when the consumer's channel or connection
// closes, for another consumer to take; on NATS a delivery is gone with
// its task stream when the stream is made again (a server back without
// its store, a stream deleted). A revoked delivery must not be run (it
// would run twice, or for a job the broker lost) and cannot be settled:
// a settle fails without reaching the broker, which frees what the
// delivery held (its room in a consumer's window).
type Revocable interface {
	Revoked() bool
}

// Revoked reports whether the broker has taken d back (see Revocable).
func Revoked(d Delivery) bool {
	r, ok := d.(Revocable)
	return ok && r.Revoked()
}

// QueueOptions configure a consumer of a work queue.
type QueueOptions struct {
	// Prefetch bounds the number of unsettled deliveries held by this
	// consumer: those handed to the reader and not yet settled, plus
	// those the bus took from the broker and has not handed over yet.
	// Zero means 1. A reader that takes every delivery at once and
	// renews its lease (InProgress) keeps every message it holds from
	// being redelivered.
	Prefetch int
	// Window, when set, replaces Prefetch with a bound the reader may
	// change while the consumer runs (Window.Set): a smaller window takes
	// nothing back, the bus just takes no more until the unsettled
	// deliveries fall below it.
	Window *Window
	// Lease is how long a delivery may stay unsettled without InProgress
	// before the bus redelivers it to another consumer. Zero means the
	// bus default (30s). All consumers of a queue must use the same lease.
	Lease time.Duration
	// MaxAttempts bounds deliveries of one message; a message delivered
	// more often is handed to the consumer one last time with Attempt() >
	// MaxAttempts so that it can report and Term it. Zero means 5.
	MaxAttempts int
	// Transient marks a queue that serves one job only: the bus may drop
	// its consumer state once nobody has consumed it for a while.
	Transient bool
	// Limit, when positive, is the most messages this consumer will
	// take: the bus never pulls more than it can still deliver, so that a
	// consumer that stops at its limit (a runtime in action mode) leaves
	// no message held by the broker until its lease runs out. A bus that
	// returns unsettled messages at once when a consumer stops may ignore
	// it.
	Limit int
}

// Queue is a durable work queue with competing consumers: each message is
// delivered to one consumer at a time and redelivered when its lease runs
// out unsettled (consumer crashed or lost its connection).
type Queue interface {
	// Enqueue stores msgs on the named queue and returns once the broker
	// has confirmed every one of them (or the first error).
	Enqueue(ctx context.Context, queue string, msgs ...Message) error
	// Consume delivers the queue's messages on the returned channel until
	// ctx is done or the bus is closed; the channel is always closed then.
	// Deliveries not settled when the channel closes are redelivered.
	Consume(ctx context.Context, queue string, opts QueueOptions) (<-chan Delivery, error)
}

// SubscribeOptions choose where a stream subscription starts.
type SubscribeOptions struct {
	// From replays messages from this stream position (Message.Seq, or
	// what PublishSeq returned) inclusive before live ones. It takes
	// precedence over Since. A position older than the stream's
	// retention starts at the oldest message kept.
	From uint64
	// Since replays messages stored at or after this time (the broker's
	// clock) before live ones. Zero (and From zero) means only messages
	// published after Subscribe returns.
	Since time.Time
	// To, when set, is where the subscription ends: the matching messages
	// up to and including position To are delivered, then the channel is
	// closed (at once when none lies between the start and To). To must
	// be the position of a message already stored (returned by PublishSeq
	// or seen in Message.Seq): this is how a reader reads a log to a
	// known end without waiting for quiet.
	To uint64
}

// Stream is a durable, replayable log of events addressed by dotted
// subjects. Messages on one subject are delivered in publish order.
//
// The stream is totally ordered: every stored message has a position
// (Message.Seq) and every subscriber sees the messages it matches in
// position order. Positions are how Skein reads "up to here" and "from
// there": a reader that must know it has caught up publishes a record
// with PublishSeq (or takes the position of a record it knows) and reads
// until a message at or past that position arrives, never until the
// stream has been quiet for a while, and never by comparing clocks.
type Stream interface {
	// Publish stores msg on subject and returns once it is durable.
	Publish(ctx context.Context, subject string, msg Message) error
	// PublishSeq is Publish that also returns the position msg was
	// stored at (what a subscriber sees in Message.Seq). It may cost
	// more than Publish (RabbitMQ reads the message back from the
	// stream): use it for records whose position matters, not for every
	// event.
	PublishSeq(ctx context.Context, subject string, msg Message) (uint64, error)
	// Subscribe delivers messages whose subject matches pattern ("*" one
	// token, ">" one or more trailing tokens) on the returned channel,
	// which is closed when ctx is done or the bus is closed. A slow reader
	// slows delivery; nothing is dropped.
	Subscribe(ctx context.Context, pattern string, opts SubscribeOptions) (<-chan Message, error)
}

// Broadcast is fire-and-forget fan-out to whoever listens now (progress,
// cancel notices). Nothing is stored.
type Broadcast interface {
	Notify(ctx context.Context, subject string, data []byte) error
	// Listen delivers matching messages until ctx is done; messages that
	// arrive while the reader is slow may be dropped.
	Listen(ctx context.Context, pattern string) (<-chan Message, error)
}

// Handler answers one request.
type Handler func(ctx context.Context, req Message) ([]byte, error)

// RPC is request/reply. Handlers registered on the same subject by several
// processes share the load: each request goes to one of them.
type RPC interface {
	// Request sends data to subject and waits for the reply until ctx is
	// done. It returns ErrNoResponders when nobody serves subject.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
	// Serve calls h for every request on subject until ctx is done. An
	// error returned by h reaches the requester as a *RemoteError.
	Serve(ctx context.Context, subject string, h Handler) error
}

// Bus is everything Skein needs from a message broker. Implementations are
// safe for concurrent use.
type Bus interface {
	Queue
	Stream
	Broadcast
	RPC
	// Close releases the connection; channels handed out are closed.
	Close() error
}

// Purger is implemented by buses that can drop one key's pending messages
// from a queue (used to cancel a job's queued tasks).
type Purger interface {
	Purge(ctx context.Context, queue, key string) error
}

// StoreWatcher is implemented by buses that notice their broker coming
// back without its store (bus/natsbus): StoreLost's channel receives once
// each time the bus finds its event stream made again. The bus reads the
// new stream from its start, but a reader that waits for a position on
// it learns of the loss only from the next record; the coordinator writes
// one (a mark) when it hears of the loss. A bus that cannot tell a broker
// that lost its store from one that kept it (bus/rabbitmq) sends at each
// reconnection: the coordinator's mark then shows which it was.
type StoreWatcher interface {
	StoreLost() <-chan struct{}
}

// Limits is implemented by buses that know their largest message.
type Limits interface {
	MaxMessageSize() int
}

var (
	// ErrSettled is returned when a delivery is settled twice.
	ErrSettled = errors.New("bus: delivery already settled")
	// ErrNoResponders is returned by Request when nobody serves a subject.
	ErrNoResponders = errors.New("bus: no responders")
	// ErrClosed is returned by calls on a closed bus.
	ErrClosed = errors.New("bus: closed")
	// ErrTooLarge is returned when a message exceeds the bus' limit.
	ErrTooLarge = errors.New("bus: message too large")
	// ErrUnreachable is returned when the broker cannot be reached.
	ErrUnreachable = errors.New("bus: broker unreachable")
)

// RemoteError is a handler's error carried back to a requester.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }
