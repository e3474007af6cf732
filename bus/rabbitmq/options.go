package rabbitmq

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"
)

// Queue types for Options.QueueType.
const (
	QueueTypeAuto    = ""        // quorum when the broker supports it (3.8+), else classic
	QueueTypeQuorum  = "quorum"  // replicated, counts deliveries (x-delivery-count)
	QueueTypeClassic = "classic" // durable classic queue; attempts are approximated
)

// Environment variables read for credentials when the URL carries none.
const (
	EnvUsername = "SKEIN_AMQP_USERNAME"
	EnvPassword = "SKEIN_AMQP_PASSWORD"
)

// Options configure a Bus. Start from DefaultOptions.
type Options struct {
	// Name is the connection's name on the broker (connection_name,
	// shown by rabbitmqctl list_connections and the management UI).
	// Default "skein".
	Name string
	// Logger receives connection events (lost, reconnected), dead
	// letters and lease expiries. Nil discards.
	Logger *slog.Logger
	// Prefix names the objects the bus declares: the event exchange and
	// stream queue "<prefix>.events", the broadcast exchange
	// "<prefix>.broadcast", RPC queues "<prefix>.rpc.<subject>", the
	// requeue exchange "<prefix>.requeue" and delay queues
	// "<prefix>.delay.<queue>.<ms>ms".
	Prefix string
	// QueueType of work queues and their dead-letter queues: QueueTypeAuto,
	// QueueTypeQuorum or QueueTypeClassic. A queue that already exists
	// keeps its type; declaring it with another type fails.
	QueueType string
	// DeliveryLimit is the broker-side backstop on quorum queues
	// (x-delivery-limit): a message returned this many times without
	// being settled is dead-lettered by the broker itself. It must exceed
	// every consumer's MaxAttempts; the consumer-side limit normally acts
	// first.
	DeliveryLimit int
	// MaxMessageSize bounds Message.Data on every publish; larger messages
	// fail with bus.ErrTooLarge before they reach the broker. The broker's
	// own max_message_size (128 MiB by default) must be larger.
	MaxMessageSize int
	// DialTimeout bounds one connection attempt (TCP, TLS and AMQP
	// handshake).
	DialTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval; a dead connection is
	// noticed after about two intervals.
	Heartbeat time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// reconnection attempts.
	ReconnectMin, ReconnectMax time.Duration
	// TLS configures amqps:// connections. Nil uses the system roots and
	// the URL's host name.
	TLS *tls.Config
	// Username and Password override the URL's credentials. When both the
	// URL and these are empty, EnvUsername and EnvPassword are read.
	Username, Password string
	// StreamMaxAge and StreamMaxBytes bound the event stream's retention
	// (x-max-age, x-max-length-bytes). They apply when the stream is
	// first declared.
	StreamMaxAge   string
	StreamMaxBytes int64
	// StreamPrefetch is the credit of a stream consumer (basic.qos).
	StreamPrefetch int
	// SubscriberBuffer is how many matching events the bus' shared reader
	// of the event stream holds for one subscription that has not taken
	// them yet. A subscription that falls further behind reads on a
	// consumer of its own until it has caught up (see Subscribe).
	SubscriberBuffer int
	// RPCConcurrency bounds the handlers Serve runs at once per subject.
	RPCConcurrency int
}

// DefaultOptions returns the options Connect uses for zero fields.
func DefaultOptions() Options {
	return Options{
		Name:             "skein",
		Prefix:           "skein",
		QueueType:        QueueTypeAuto,
		DeliveryLimit:    50,
		MaxMessageSize:   16 << 20,
		DialTimeout:      5 * time.Second,
		Heartbeat:        10 * time.Second,
		ReconnectMin:     100 * time.Millisecond,
		ReconnectMax:     3 * time.Second,
		StreamMaxAge:     "7D",
		StreamMaxBytes:   4 << 30,
		StreamPrefetch:   256,
		SubscriberBuffer: 1024,
		RPCConcurrency:   32,
	}
}

func (o *Options) setDefaults() {
	d := DefaultOptions()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Name == "" {
		o.Name = d.Name
	}
	if o.Prefix == "" {
		o.Prefix = d.Prefix
	}
	if o.DeliveryLimit == 0 {
		o.DeliveryLimit = d.DeliveryLimit
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = d.MaxMessageSize
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = d.DialTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = d.Heartbeat
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = d.ReconnectMin
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = d.ReconnectMax
	}
	if o.StreamMaxAge == "" {
		o.StreamMaxAge = d.StreamMaxAge
	}
	if o.StreamMaxBytes == 0 {
		o.StreamMaxBytes = d.StreamMaxBytes
	}
	if o.StreamPrefetch == 0 {
		o.StreamPrefetch = d.StreamPrefetch
	}
	if o.SubscriberBuffer == 0 {
		o.SubscriberBuffer = d.SubscriberBuffer
	}
	if o.RPCConcurrency == 0 {
		o.RPCConcurrency = d.RPCConcurrency
	}
}

var (
	namePart = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	maxAge   = regexp.MustCompile(`^[0-9]+(Y|M|D|h|m|s)$`)
)

// Validate reports every bad field by name.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !namePart.MatchString(o.Prefix) {
		bad("Prefix %q: want dot-separated tokens of letters, digits, '-' and '_'", o.Prefix)
	}
	switch o.QueueType {
	case QueueTypeAuto, QueueTypeQuorum, QueueTypeClassic:
	default:
		bad("QueueType %q: want %q, %q or empty (auto)", o.QueueType, QueueTypeQuorum, QueueTypeClassic)
	}
	if o.DeliveryLimit < 1 {
		bad("DeliveryLimit %d: want at least 1", o.DeliveryLimit)
	}
	if o.MaxMessageSize < 1 || o.MaxMessageSize > 128<<20 {
		bad("MaxMessageSize %d: want 1 to 128 MiB (RabbitMQ's limit)", o.MaxMessageSize)
	}
	if o.DialTimeout <= 0 {
		bad("DialTimeout %s: want > 0", o.DialTimeout)
	}
	if o.Heartbeat < time.Second {
		bad("Heartbeat %s: want at least 1s", o.Heartbeat)
	}
	if o.ReconnectMin <= 0 {
		bad("ReconnectMin %s: want > 0", o.ReconnectMin)
	}
	if o.ReconnectMax < o.ReconnectMin {
		bad("ReconnectMax %s: want at least ReconnectMin (%s)", o.ReconnectMax, o.ReconnectMin)
	}
	if (o.Username == "") != (o.Password == "") {
		bad("Username and Password: set both or neither")
	}
	if !maxAge.MatchString(o.StreamMaxAge) {
		bad("StreamMaxAge %q: want a number and one of Y M D h m s, e.g. 7D", o.StreamMaxAge)
	}
	if o.StreamMaxBytes < 1 {
		bad("StreamMaxBytes %d: want > 0", o.StreamMaxBytes)
	}
	if o.StreamPrefetch < 1 || o.StreamPrefetch > 65535 {
		bad("StreamPrefetch %d: want 1 to 65535", o.StreamPrefetch)
	}
	if o.SubscriberBuffer < 1 {
		bad("SubscriberBuffer %d: want at least 1", o.SubscriberBuffer)
	}
	if o.RPCConcurrency < 1 || o.RPCConcurrency > 65535 {
		bad("RPCConcurrency %d: want 1 to 65535", o.RPCConcurrency)
	}
	if len(errs) > 0 {
		return fmt.Errorf("rabbitmq: invalid options: %w", errors.Join(errs...))
	}
	return nil
}
