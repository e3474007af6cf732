package rabbitmq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
)

// Bus is a bus.Bus on RabbitMQ. It also implements bus.Limits. It is safe
// for concurrent use.
type Bus struct {
	opts  Options
	log   *slog.Logger
	nodes []node // the brokers to connect to, in the order given
	cfg   amqp.Config

	// redacted names the node of the current (or last) connection, for
	// logs and errors; guarded by mu.
	redacted string
	node     int // index in nodes of the current (or last) connection; guarded by mu

	quorum  bool // work queues are quorum queues
	streams bool // the broker has stream queues (3.9+)

	done     chan struct{} // closed by Close
	closeOne sync.Once
	// reconnected receives at each reconnection (StoreLost): the broker
	// may have come back without its data, which the bus cannot tell.
	reconnected chan struct{}
	wg          sync.WaitGroup // background goroutines

	mu    sync.Mutex
	conn  *amqp.Connection
	gen   uint64        // connection generation, +1 per reconnect
	ready chan struct{} // closed while conn is usable
	pub   *amqp.Channel // confirm-mode channel for publishes, lazily (re)opened
	rpc   *rpcClient    // reply channel for Request, lazily (re)opened

	declMu   sync.Mutex
	declared map[string]time.Time // queue name -> last declare

	streamReads atomic.Uint64 // event-stream deliveries taken from the broker by subscriptions
	tail        tail          // the shared live reader of the event stream
}

var _ bus.Bus = (*Bus)(nil)
var _ bus.Limits = (*Bus)(nil)
var _ bus.StoreWatcher = (*Bus)(nil)

// StoreLost implements bus.StoreWatcher. A broker that comes back without
// its data (a volume not kept) makes the event stream anew, its offsets
// starting again at 0, and the bus cannot tell it from one that kept its
// data: the channel receives at each reconnection, and the coordinator
// checks its job log then (a mark written and read back).
func (b *Bus) StoreLost() <-chan struct{} { return b.reconnected }

// node is one broker of the list given to Connect.
type node struct {
	url      string // with credentials: never log it
	redacted string
	tls      *tls.Config // the config with the node's server name, or nil
}

// Connect dials rawURL (amqp:// or amqps://), declares the bus' exchanges
// and event stream, and returns a Bus that reconnects by itself when the
// connection drops. rawURL may be a comma-separated list of the nodes of
// a cluster (the same virtual host on each): the bus connects to one of
// them, starting at a random one so that programs spread over the nodes,
// and when its connection drops it tries the next node of the list, and
// so on round the list, until one answers. A broker that cannot be
// reached within opts.DialTimeout per node (or ctx) fails with an error
// wrapping bus.ErrUnreachable.
func Connect(ctx context.Context, rawURL string, opts Options) (*Bus, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	b := &Bus{
		opts:        opts,
		log:         opts.Logger,
		done:        make(chan struct{}),
		reconnected: make(chan struct{}, 1),
		ready:       make(chan struct{}),
		declared:    map[string]time.Time{},
	}
	b.tail.b = b
	b.cfg = amqp.Config{
		Heartbeat:       opts.Heartbeat,
		TLSClientConfig: opts.TLS,
		Locale:          "en_US",
		Properties:      amqp.Table{"connection_name": opts.Name},
	}
	vhost := ""
	for i, raw := range strings.Split(rawURL, ",") {
		n, path, err := b.parseNode(strings.TrimSpace(raw))
		if err != nil {
			return nil, err
		}
		if i > 0 && path != vhost {
			return nil, fmt.Errorf("rabbitmq: bad URL list %q: the nodes name different virtual hosts", redactList(rawURL))
		}
		vhost = path
		b.nodes = append(b.nodes, n)
	}
	b.node = rand.IntN(len(b.nodes))
	conn, err := b.dial(ctx, b.node)
	if err != nil {
		return nil, err
	}
	b.detectFeatures(conn)
	if err := b.declareTopology(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	b.setConn(conn)
	b.log.Info("rabbitmq connected", "url", b.ConnectedURL(), "nodes", len(b.nodes), "quorum", b.quorum, "streams", b.streams)
	return b, nil
}

// parseNode checks one URL of the list and returns it with its
// credentials and TLS settings, and its virtual host.
func (b *Bus) parseNode(rawURL string) (node, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return node{}, "", fmt.Errorf("rabbitmq: bad URL %q: %w", Redact(rawURL), errors.Unwrap(err))
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return node{}, "", fmt.Errorf("rabbitmq: bad URL %q: scheme must be amqp or amqps", Redact(rawURL))
	}
	if u.Host == "" {
		return node{}, "", fmt.Errorf("rabbitmq: bad URL %q: no host", Redact(rawURL))
	}
	switch {
	case b.opts.Username != "":
		u.User = url.UserPassword(b.opts.Username, b.opts.Password)
	case u.User == nil && os.Getenv(EnvUsername) != "":
		u.User = url.UserPassword(os.Getenv(EnvUsername), os.Getenv(EnvPassword))
	}
	n := node{url: u.String(), redacted: Redact(u.String())}
	if u.Scheme == "amqps" && b.cfg.TLSClientConfig != nil && b.cfg.TLSClientConfig.ServerName == "" {
		n.tls = b.cfg.TLSClientConfig.Clone()
		n.tls.ServerName = u.Hostname()
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" {
		vhost = "/"
	}
	return n, vhost, nil
}

func redactList(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = Redact(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// ConnectedURL is the URL (without its password) of the node the bus is
// connected to, or was last connected to while it reconnects.
func (b *Bus) ConnectedURL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.redacted
}

// Redact returns rawURL with its password replaced by "xxxxx"; an
// unparsable URL is replaced entirely.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// MaxMessageSize implements bus.Limits: the largest Message.Data accepted.
func (b *Bus) MaxMessageSize() int { return b.opts.MaxMessageSize }

// dial tries every node once, starting at node first, and returns the
// first connection made; b.node and b.redacted then name its node. Each
// attempt is bounded by DialTimeout and ctx. When none answers, the error
// is the first node's.
func (b *Bus) dial(ctx context.Context, first int) (*amqp.Connection, error) {
	conn, n, err := b.dialFrom(ctx, first, "")
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.node, b.redacted = n, b.nodes[n].redacted
	b.mu.Unlock()
	return conn, nil
}

// dialOwn makes a connection of a consumer's own (see consumer), named
// "<Options.Name> <what>", to the node of the bus's connection if it
// answers, else the next one that does.
func (b *Bus) dialOwn(ctx context.Context, what string) (*amqp.Connection, error) {
	b.mu.Lock()
	first := b.node
	b.mu.Unlock()
	conn, _, err := b.dialFrom(ctx, first, b.opts.Name+" "+what)
	return conn, err
}

// dialFrom tries every node once, starting at node first, and returns
// the first connection made and its node. name, when given, replaces
// Options.Name as the connection's name.
func (b *Bus) dialFrom(ctx context.Context, first int, name string) (*amqp.Connection, int, error) {
	var firstErr error
	for i := range b.nodes {
		n := (first + i) % len(b.nodes)
		conn, err := b.dialNode(ctx, b.nodes[n], name)
		if err == nil {
			return conn, n, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if len(b.nodes) > 1 {
			b.log.Debug("rabbitmq node unreachable", "url", b.nodes[n].redacted, "err", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(b.nodes) > 1 {
		return nil, 0, fmt.Errorf("%w (and the other %d nodes of the list)", firstErr, len(b.nodes)-1)
	}
	return nil, 0, firstErr
}

// dialNode makes one connection attempt to one node.
func (b *Bus) dialNode(ctx context.Context, n node, name string) (*amqp.Connection, error) {
	timeout := b.opts.DialTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	cfg := b.cfg
	if name != "" {
		cfg.Properties = amqp.Table{"connection_name": name}
	}
	if n.tls != nil {
		cfg.TLSClientConfig = n.tls
	}
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		// The handshake must finish in time too; openComplete clears it.
		_ = c.SetDeadline(time.Now().Add(timeout))
		return c, nil
	}
	conn, err := amqp.DialConfig(n.url, cfg)
	if err != nil {
		msg := scrub(err.Error(), n.url)
		var aerr *amqp.Error
		if errors.Is(err, amqp.ErrVhost) {
			return nil, fmt.Errorf("rabbitmq: connect %s: access to the virtual host refused (check the user's permissions on it): %s: %w", n.redacted, msg, bus.ErrUnreachable)
		}
		if errors.As(err, &aerr) && aerr.Code == amqp.AccessRefused || errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrSASL) {
			return nil, fmt.Errorf("rabbitmq: connect %s: access refused (check the credentials): %s: %w", n.redacted, msg, bus.ErrUnreachable)
		}
		var ue x509.UnknownAuthorityError
		var ce *tls.CertificateVerificationError
		if errors.As(err, &ue) || errors.As(err, &ce) {
			return nil, fmt.Errorf("rabbitmq: connect %s: %s (the broker's certificate is not signed by a trusted CA: give its CA with --tls-ca or SKEIN_TLS_CA): %w", n.redacted, msg, bus.ErrUnreachable)
		}
		return nil, fmt.Errorf("rabbitmq: connect %s: %s: %w", n.redacted, msg, bus.ErrUnreachable)
	}
	return conn, nil
}

// scrub removes the password of rawURL from msg, should a library error
// quote it.
func scrub(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return msg
	}
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}

func (b *Bus) detectFeatures(conn *amqp.Connection) {
	major, minor := 0, 0
	if v, ok := conn.Properties["version"].(string); ok {
		parts := strings.SplitN(v, ".", 3)
		if len(parts) >= 2 {
			major, _ = strconv.Atoi(parts[0])
			minor, _ = strconv.Atoi(parts[1])
		}
	}
	atLeast := func(ma, mi int) bool { return major > ma || (major == ma && minor >= mi) }
	switch b.opts.QueueType {
	case QueueTypeQuorum:
		b.quorum = true
	case QueueTypeClassic:
		b.quorum = false
	default:
		b.quorum = atLeast(3, 8)
	}
	b.streams = atLeast(3, 9)
}

func (b *Bus) eventsName() string    { return b.opts.Prefix + ".events" }
func (b *Bus) broadcastName() string { return b.opts.Prefix + ".broadcast" }

// requeueName is the direct exchange through which a consumer hands
// messages back: a Nak to its work queue or a delay queue, a Term to the
// dead-letter queue. Only those queues are bound to it, each under its own
// name, so that a runtime needs no write on the default exchange, which
// reaches every queue of the vhost (the API's included).
func (b *Bus) requeueName() string { return b.opts.Prefix + ".requeue" }

// declareTopology declares the exchanges and the event stream. Durable
// objects survive broker restarts; declaring them again is harmless. A
// user without configure permission on them (a submitter or runtime on
// a vhost set up by deploy/rabbitmq) checks instead that they exist: the
// coordinator declares them.
func (b *Bus) declareTopology(conn *amqp.Connection) error {
	err := b.declareObjects(conn, false)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.AccessRefused {
		if perr := b.declareObjects(conn, true); perr != nil {
			return fmt.Errorf("%w (this user may not declare them, and they do not exist yet: start the coordinator first): %w", perr, bus.ErrUnreachable)
		}
		return nil
	}
	return err
}

// declareObjects declares the exchanges and the event stream, or only
// checks that they exist (passive).
func (b *Bus) declareObjects(conn *amqp.Connection, passive bool) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open channel on %s: %w", b.ConnectedURL(), err)
	}
	defer ch.Close()
	exchange, queue := ch.ExchangeDeclare, ch.QueueDeclare
	if passive {
		exchange, queue = ch.ExchangeDeclarePassive, ch.QueueDeclarePassive
	}
	for _, x := range []struct{ name, kind string }{
		{b.eventsName(), amqp.ExchangeTopic},
		{b.broadcastName(), amqp.ExchangeTopic},
		{b.rpcExchange(), amqp.ExchangeDirect},
		{b.requeueName(), amqp.ExchangeDirect},
	} {
		if passive && x.name == b.requeueName() {
			// Only consumers use it, and they find out when they bind
			// their queues to it (a coordinator older than it).
			continue
		}
		if err := exchange(x.name, x.kind, true, false, false, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: declare exchange %s: %w", x.name, err)
		}
	}
	if !b.streams {
		return nil
	}
	if passive {
		if _, err := queue(b.eventsName(), true, false, false, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: declare stream queue %s: %w", b.eventsName(), err)
		}
		return nil
	}
	args := amqp.Table{
		amqp.QueueTypeArg:         amqp.QueueTypeStream,
		amqp.StreamMaxAgeArg:      b.opts.StreamMaxAge,
		amqp.StreamMaxLenBytesArg: b.opts.StreamMaxBytes,
	}
	if _, err := queue(b.eventsName(), true, false, false, false, args); err != nil {
		return fmt.Errorf("rabbitmq: declare stream queue %s: %w", b.eventsName(), err)
	}
	if err := ch.QueueBind(b.eventsName(), "#", b.eventsName(), false, nil); err != nil {
		return fmt.Errorf("rabbitmq: bind stream queue %s: %w", b.eventsName(), err)
	}
	return nil
}

// setConn installs a fresh connection and starts watching it.
func (b *Bus) setConn(conn *amqp.Connection) {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	b.mu.Lock()
	b.conn = conn
	b.gen++
	b.pub = nil
	b.rpc = nil
	close(b.ready)
	b.mu.Unlock()
	b.wg.Add(1)
	go b.watch(conn, closed)
}

// watch waits for conn to drop and reconnects with backoff.
func (b *Bus) watch(conn *amqp.Connection, closed <-chan *amqp.Error) {
	defer b.wg.Done()
	var reason *amqp.Error
	select {
	case reason = <-closed:
	case <-b.done:
		return
	}
	b.mu.Lock()
	if b.conn == conn {
		b.ready = make(chan struct{})
		if b.rpc != nil {
			b.rpc.fail(fmt.Errorf("rabbitmq: connection to %s lost during the request", b.redacted))
			b.rpc = nil
		}
		b.pub = nil
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return
	default:
	}
	b.mu.Lock()
	lost, next := b.redacted, (b.node+1)%len(b.nodes)
	b.mu.Unlock()
	b.log.Warn("rabbitmq connection lost; reconnecting", "url", lost, "reason", reasonText(reason), "nodes", len(b.nodes))
	delay := b.opts.ReconnectMin
	start := time.Now()
	for attempt := 1; ; attempt++ {
		// One round over the nodes, starting at the one after the node
		// lost: on a cluster the next live node takes over at once.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(b.nodes))*b.opts.DialTimeout)
		c, err := b.dial(ctx, next)
		cancel()
		if err == nil {
			if err = b.declareTopology(c); err == nil {
				// The broker may have come back without its data: the
				// queues this process declared are declared again at
				// their next use.
				b.declMu.Lock()
				clear(b.declared)
				b.declMu.Unlock()
				b.setConn(c)
				b.log.Info("rabbitmq reconnected", "url", b.ConnectedURL(), "lost", lost, "attempts", attempt, "down", time.Since(start).Round(time.Millisecond))
				select {
				case b.reconnected <- struct{}{}:
				default:
				}
				return
			}
			_ = c.Close()
		}
		b.log.Debug("rabbitmq reconnect failed", "attempt", attempt, "err", err)
		jitter := time.Duration(rand.Int64N(int64(delay)/2 + 1))
		select {
		case <-time.After(delay + jitter):
		case <-b.done:
			return
		}
		delay = min(delay*2, b.opts.ReconnectMax)
	}
}

func reasonText(e *amqp.Error) string {
	if e == nil {
		return "closed"
	}
	return fmt.Sprintf("%d %s", e.Code, e.Reason)
}

// current waits until the bus is connected and returns the connection and
// its generation.
func (b *Bus) current(ctx context.Context) (*amqp.Connection, uint64, error) {
	for {
		b.mu.Lock()
		conn, gen, ready := b.conn, b.gen, b.ready
		b.mu.Unlock()
		select {
		case <-b.done:
			return nil, 0, bus.ErrClosed
		default:
		}
		select {
		case <-ready:
			if !conn.IsClosed() {
				return conn, gen, nil
			}
			// Dropped but watch has not noticed yet.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		case <-b.done:
			return nil, 0, bus.ErrClosed
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// channel opens a channel on the current connection.
func (b *Bus) channel(ctx context.Context) (*amqp.Channel, error) {
	for {
		conn, _, err := b.current(ctx)
		if err != nil {
			return nil, err
		}
		ch, err := conn.Channel()
		if err == nil {
			return ch, nil
		}
		if !errors.Is(err, amqp.ErrClosed) {
			return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
		}
	}
}

// publisher returns the shared confirm-mode channel, opening it if needed.
func (b *Bus) publisher(ctx context.Context) (*amqp.Channel, error) {
	for {
		conn, gen, err := b.current(ctx)
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		if b.gen == gen && b.pub != nil && !b.pub.IsClosed() {
			ch := b.pub
			b.mu.Unlock()
			return ch, nil
		}
		b.mu.Unlock()
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			if errors.Is(err, amqp.ErrClosed) {
				continue
			}
			return nil, fmt.Errorf("rabbitmq: open publisher channel: %w", err)
		}
		b.mu.Lock()
		if b.gen == gen && (b.pub == nil || b.pub.IsClosed()) {
			b.pub = ch
			b.mu.Unlock()
			return ch, nil
		}
		b.mu.Unlock()
		_ = ch.Close() // someone else won the race
	}
}

// pending is one publish waiting for its confirm.
type pending struct {
	exchange, key string
	msg           amqp.Publishing
	conf          *amqp.DeferredConfirmation
}

// publishConfirmed publishes every item and returns once the broker has
// confirmed all of them. A publish that is nacked, or whose channel or
// connection drops before the confirm arrives, is sent again after the bus
// reconnects, until ctx is done: nothing is silently lost, but a retried
// message may arrive twice.
func (b *Bus) publishConfirmed(ctx context.Context, items []*pending) error {
	todo := items
	delay := b.opts.ReconnectMin
	for len(todo) > 0 {
		ch, err := b.publisher(ctx)
		if err != nil {
			return err
		}
		var retry []*pending
		for i, p := range todo {
			p.conf, err = ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, p.key, false, false, p.msg)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				retry = append(retry, todo[i:]...)
				break
			}
		}
		for _, p := range todo {
			if p.conf == nil {
				continue
			}
			ok, err := p.conf.WaitContext(ctx)
			if err != nil {
				return fmt.Errorf("rabbitmq: waiting for the broker to confirm a publish to %q: %w", p.key, err)
			}
			if !ok {
				retry = append(retry, p)
			}
			p.conf = nil
		}
		if len(retry) == 0 {
			return nil
		}
		b.log.Debug("rabbitmq publish not confirmed; retrying", "messages", len(retry))
		todo = retry
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("rabbitmq: %d publishes not confirmed: %w", len(todo), ctx.Err())
		case <-b.done:
			return bus.ErrClosed
		}
		delay = min(delay*2, b.opts.ReconnectMax)
	}
	return nil
}

// Close closes the connection and every channel handed out. Unsettled
// deliveries go back to their queues.
func (b *Bus) Close() error {
	var err error
	b.closeOne.Do(func() {
		close(b.done)
		b.mu.Lock()
		conn := b.conn
		if b.rpc != nil {
			b.rpc.fail(bus.ErrClosed)
		}
		b.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			err = conn.Close()
			if errors.Is(err, amqp.ErrClosed) {
				err = nil
			}
		}
		b.wg.Wait()
	})
	return err
}

func (b *Bus) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// backoff sleeps before the n-th resubscription attempt; false when the bus
// or ctx ended.
func (b *Bus) backoff(ctx context.Context, n int) bool {
	d := b.opts.ReconnectMin << min(n, 10)
	d = min(d, b.opts.ReconnectMax)
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	case <-b.done:
		return false
	}
}

// closeConsumer closes a channel that has a consumer. The library's
// consumer buffer must be drained while the channel closes, or Close waits
// for it forever; what is drained was not acked and goes back to its queue.
// (Consumers are never given a ctx: the library would cancel them from
// another goroutine while Close runs, and two calls on one channel hang.)
func closeConsumer(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	go func() {
		for range deliveries {
		}
	}()
	_ = ch.Close()
}
