package natsbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
)

// ErrBadURL reports a server URL that cannot be used.
var ErrBadURL = errors.New("bad bus URL")

// Options configure a connection.
type Options struct {
	// Prefix starts every subject and stream name, so that several Skein
	// installations can share one server. Default "skein".
	Prefix string
	// EventRetention is how long the event stream keeps messages (the
	// window in which a restarted coordinator can replay a job). Default
	// 24h.
	EventRetention time.Duration
	// Replicas for the streams Skein creates (1 on a single server, 3 on
	// a cluster). Default 1.
	Replicas int
	// ConnectTimeout bounds the initial connection. Default 5s.
	ConnectTimeout time.Duration
	// MemoryStorage keeps the streams in memory instead of files: for an
	// embedded server whose jobs live only as long as its process.
	MemoryStorage bool
	// MemoryTasks keeps only the task stream in memory; the events and
	// the job log stay on files. For an embedded server whose jobs live
	// only as long as its process and whose coordinator bounds the tasks
	// queued (Config.JobBacklog): the queue then holds a bounded number,
	// while a job's events grow with its tasks.
	MemoryTasks bool
	// DedupWindow is how long the streams remember message ids to drop a
	// duplicate publish (a publish retried after a lost ack). The server
	// keeps every id of the window in memory: about 90 bytes a message,
	// 90 MB for a million tasks published within it. Default 2m.
	DedupWindow time.Duration
	// Name is the client name shown in server monitoring.
	Name   string
	Logger *slog.Logger

	// InboxPrefix starts the subjects of this connection's replies (API
	// replies, JetStream acks and pull deliveries). A server with roles
	// lets each user subscribe only to its own prefix, so that no user
	// can read another's replies. Must start with "_INBOX". Default
	// "_INBOX" (the NATS default).
	InboxPrefix string
	// User and Password replace the URL's credentials (so that a secret
	// need not appear in the URL).
	User, Password string
	// Token authenticates with a token instead.
	Token string
	// NKeyFile names a file holding an NKEY user seed (SU…).
	NKeyFile string
	// CredsFile names a .creds file (user JWT and NKEY seed).
	CredsFile string
	// TLS, when set, is used for the connection (CA, client certificate);
	// it makes TLS required even on a nats:// URL.
	TLS *tls.Config

	// server, when set, connects in-process to an embedded server.
	server *server.Server
	// pullWait and pullExpires are a windowed consumer's times for a
	// pull request (window.go): windowExpiry and nine tenths of it,
	// unless a test sets them.
	pullWait, pullExpires time.Duration
}

func (o *Options) setDefaults() {
	if o.pullWait == 0 {
		o.pullWait, o.pullExpires = windowExpiry, windowExpiry*9/10
	}
	if o.Prefix == "" {
		o.Prefix = "skein"
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = 2 * time.Minute
	}
	if o.EventRetention == 0 {
		o.EventRetention = 24 * time.Hour
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every bad field.
func (o Options) Validate() error {
	var errs []error
	if o.Prefix != "" && !validToken(o.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: must be one subject token (letters, digits, - and _)", o.Prefix))
	}
	if o.DedupWindow < 0 {
		errs = append(errs, fmt.Errorf("dedup window %v: must not be negative", o.DedupWindow))
	}
	if o.EventRetention < 0 {
		errs = append(errs, fmt.Errorf("event retention %v: must not be negative", o.EventRetention))
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: must be between 1 and 5", o.Replicas))
	}
	if p := o.InboxPrefix; p != "" && (p != "_INBOX" && !strings.HasPrefix(p, "_INBOX.") || !validSubject(p)) {
		errs = append(errs, fmt.Errorf("inbox prefix %q: must be _INBOX or start with \"_INBOX.\", without wildcards", p))
	}
	n := 0
	for _, set := range []bool{o.User != "" || o.Password != "", o.Token != "", o.NKeyFile != "", o.CredsFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("credentials: give one of user/password, token, NKEY seed file or creds file"))
	}
	return errors.Join(errs...)
}

// Bus is the NATS JetStream implementation of bus.Bus.
//
// Queues are one work-queue stream (<PREFIX>_TASKS, subjects
// <prefix>.task.<queue>.<key>) with one durable pull consumer per queue
// shared by every consumer of that queue; the stream is a log with
// limits retention (<PREFIX>_EVENTS, subjects <prefix>.ev.>); broadcasts
// and RPC use core NATS subjects <prefix>.bc.> and <prefix>.rpc.>.
type Bus struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	acks *pubAcks
	opts Options
	log  *slog.Logger

	tasksStream  string
	eventsStream string
	denied       *denials

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // queue -> consumer
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	streams streamState // restore.go
	// tasksGen counts the task stream's remakes seen (sawTasks): a
	// delivery of an earlier one is gone with its stream (revoked).
	tasksGen atomic.Uint64
}

var _ bus.Bus = (*Bus)(nil)
var _ bus.Purger = (*Bus)(nil)
var _ bus.Limits = (*Bus)(nil)
var _ bus.StoreWatcher = (*Bus)(nil)

// Connect dials a NATS server ("nats://user:pass@host:4222", "tls://…",
// several comma-separated URLs for a cluster) and makes sure Skein's
// streams exist.
func Connect(ctx context.Context, urls string, opts Options) (*Bus, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	if opts.server == nil {
		if err := checkURLs(urls); err != nil {
			return nil, err
		}
	}
	log := opts.Logger
	deny := &denials{}
	acks := &pubAcks{}
	var self atomic.Pointer[Bus] // for the handlers, once connected
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.Timeout(opts.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			acks.disconnected()
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "server", redact(c.ConnectedUrl()))
			// The server may have come back without its store.
			if b := self.Load(); b != nil {
				b.restoreStreams("reconnecting")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
			deny.report(err)
		}),
	}
	if opts.server != nil {
		nopts = append(nopts, nats.InProcessServer(opts.server))
	}
	auth, err := opts.authOptions()
	if err != nil {
		return nil, err
	}
	nopts = append(nopts, auth...)
	nc, err := nats.Connect(urls, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: nats %s: %v", bus.ErrUnreachable, redact(urls), explain(err, opts.TLS != nil && len(opts.TLS.Certificates) > 0))
	}
	acks.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbus: jetstream: %w", err)
	}
	p := strings.ToUpper(opts.Prefix)
	b := &Bus{
		nc: nc, js: js, acks: acks, opts: opts, log: log,
		tasksStream:  p + "_TASKS",
		eventsStream: p + "_EVENTS",
		consumers:    make(map[string]jetstream.Consumer),
		closed:       make(chan struct{}),
		denied:       deny,
		streams:      streamState{lost: make(chan struct{}, 1)},
	}
	if _, err := b.ensureStreams(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	self.Store(b)
	return b, nil
}

// authOptions turns the credential and TLS options into nats options.
func (o *Options) authOptions() ([]nats.Option, error) {
	var nopts []nats.Option
	if o.InboxPrefix != "" && o.InboxPrefix != "_INBOX" {
		nopts = append(nopts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	switch {
	case o.User != "" || o.Password != "":
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		nopts = append(nopts, nats.Token(o.Token))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NKEY seed file: %v", bus.ErrUnreachable, err)
		}
		nopts = append(nopts, opt)
	case o.CredsFile != "":
		if _, err := os.Stat(o.CredsFile); err != nil {
			return nil, fmt.Errorf("%w: creds file: %v", bus.ErrUnreachable, err)
		}
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLS != nil {
		nopts = append(nopts, nats.Secure(o.TLS))
	}
	return nopts, nil
}

// explain adds what to do to the connection errors a user meets first.
func explain(err error, clientCert bool) error {
	var ce *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("%w (check the credentials: user and password, token, NKEY or creds file)", err)
	case errors.As(err, &ue), errors.As(err, &ce):
		return fmt.Errorf("%w (the server's certificate is not signed by a trusted CA: give its CA with --tls-ca or SKEIN_TLS_CA)", err)
	case !clientCert && strings.Contains(err.Error(), "tls"):
		return fmt.Errorf("%w (a server that verifies clients wants a client certificate: --tls-cert and --tls-key, or SKEIN_TLS_CERT and SKEIN_TLS_KEY)", err)
	}
	return err
}

func checkURLs(urls string) error {
	if strings.TrimSpace(urls) == "" {
		return fmt.Errorf("%w: natsbus: empty server URL", ErrBadURL)
	}
	for _, u := range strings.Split(urls, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			return fmt.Errorf("%w: natsbus: bad server URL %q: %v", ErrBadURL, redact(u), err)
		}
		switch pu.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%w: natsbus: server URL %q: scheme must be nats, tls, ws or wss", ErrBadURL, redact(u))
		}
		if pu.Host == "" {
			return fmt.Errorf("%w: natsbus: server URL %q has no host", ErrBadURL, redact(u))
		}
	}
	return nil
}

// ensureStreams makes Skein's streams where they do not exist and returns
// the names of those it made.
func (b *Bus) ensureStreams(ctx context.Context) (made []string, err error) {
	maxMsg := int32(b.nc.MaxPayload())
	storage := jetstream.FileStorage
	if b.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	taskStorage := storage
	if b.opts.MemoryTasks {
		taskStorage = jetstream.MemoryStorage
	}
	info, created, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        b.tasksStream,
		Description: "Skein task queues",
		Subjects:    []string{b.opts.Prefix + ".task.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     taskStorage,
		Replicas:    b.opts.Replicas,
		MaxMsgSize:  maxMsg,
		Duplicates:  b.opts.DedupWindow,
	})
	if err != nil {
		return made, fmt.Errorf("natsbus: create stream %s: %w", b.tasksStream, err)
	}
	if created {
		made = append(made, b.tasksStream)
	}
	if info != nil {
		b.sawTasks(info.Created)
	}
	info, created, err = b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        b.eventsStream,
		Description: "Skein events and job log",
		Subjects:    []string{b.opts.Prefix + ".ev.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		Replicas:    b.opts.Replicas,
		MaxAge:      b.opts.EventRetention,
		MaxMsgSize:  maxMsg,
		Duplicates:  b.opts.DedupWindow,
	})
	if err != nil {
		return made, fmt.Errorf("natsbus: create stream %s: %w", b.eventsStream, err)
	}
	if created {
		made = append(made, b.eventsStream)
	}
	if info != nil {
		b.sawEvents(info.Created)
	}
	return made, nil
}

// ensureStream creates the stream when it does not exist and leaves an
// existing one as it is: every connection would otherwise update it, and
// a stream update racing consumer creations is a data race inside
// nats-server itself. (Changing an existing stream is an operator's
// decision: `nats stream edit`.)
//
// In a cluster a JetStream API request can go unanswered while a stream's
// leader changes: each attempt is bounded by apiAttempt and tried again
// while ctx lasts.
//
// It returns the stream's information (nil when the server did not give
// it) and whether this call made the stream.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (info *jetstream.StreamInfo, made bool, err error) {
	err = retry.Do(ctx, retry.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second}, func() error {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		defer cancel()
		var err error
		info, made, err = b.ensureStreamOnce(actx, cfg)
		if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			b.log.Debug("natsbus: stream request unanswered; trying again", "stream", cfg.Name, "err", err)
			return err
		}
		return retry.Permanent(err)
	})
	return info, made, err
}

// apiAttempt bounds one JetStream API request that is tried again.
const apiAttempt = 4 * time.Second

func (b *Bus) ensureStreamOnce(ctx context.Context, cfg jetstream.StreamConfig) (*jetstream.StreamInfo, bool, error) {
	ctx, stop := b.denied.watch(ctx, "$JS.API.STREAM.INFO."+cfg.Name, "$JS.API.STREAM.CREATE."+cfg.Name)
	defer stop()
	if st, err := b.js.Stream(ctx, cfg.Name); err == nil {
		return st.CachedInfo(), false, nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, false, deniedErr(ctx, err)
	}
	st, err := b.js.CreateStream(ctx, cfg)
	err = deniedErr(ctx, err)
	if err == nil {
		return st.CachedInfo(), true, nil
	}
	// Made by another connection first (ErrStreamNameAlreadyInUse), or
	// two connections making it at once: nats-server 2.9 may answer the
	// second "subjects overlap with an existing stream" (the stream the
	// first one has just made). It exists now: done.
	if st, serr := b.js.Stream(ctx, cfg.Name); serr == nil {
		return st.CachedInfo(), false, nil
	}
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, false, nil
	}
	// A runtime's or submitter's credentials may not create streams
	// (deploy/nats): the coordinator creates them on its first start.
	return nil, false, fmt.Errorf("%w (the stream does not exist yet and this connection could not create it: start the coordinator first)", err)
}

// MaxMessageSize is the server's max_payload.
func (b *Bus) MaxMessageSize() int { return int(b.nc.MaxPayload()) }

func (b *Bus) taskSubject(queue, key string) string {
	if key == "" {
		key = "_"
	}
	return b.opts.Prefix + ".task." + queue + "." + key
}

func (b *Bus) checkSize(m Message) error {
	if n := len(m.Data) + headerSize(m.Header); int64(n) > b.nc.MaxPayload() {
		return fmt.Errorf("%w: %d bytes, limit %d", bus.ErrTooLarge, n, b.nc.MaxPayload())
	}
	return nil
}

type Message = bus.Message

func headerSize(h map[string]string) int {
	n := 0
	for k, v := range h {
		n += len(k) + len(v) + 4
	}
	return n
}

// taskKey is the key of a queue message on subject (taskSubject).
func taskKey(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 && subject[i+1:] != "_" {
		return subject[i+1:]
	}
	return ""
}

// toNats makes a NATS message of m: without a header map when m has no
// header and no key (a task's message, most of the time).
func toNats(subject string, m Message) *nats.Msg {
	nm := &nats.Msg{Subject: subject, Data: m.Data}
	if len(m.Header) > 0 || m.Key != "" {
		nm.Header = make(nats.Header, len(m.Header)+1)
	}
	for k, v := range m.Header {
		nm.Header.Set(k, v)
	}
	if m.Key != "" {
		nm.Header.Set("Skein-Key", m.Key)
	}
	return nm
}

func fromNats(subject string, nm *nats.Msg) Message {
	m := Message{Subject: subject, Data: nm.Data}
	if len(nm.Header) > 0 {
		m.Header = make(map[string]string, len(nm.Header))
		for k := range nm.Header {
			if k == "Skein-Key" {
				m.Key = nm.Header.Get(k)
				continue
			}
			if strings.HasPrefix(k, "Nats-") {
				continue
			}
			m.Header[k] = nm.Header.Get(k)
		}
	}
	return m
}

// Enqueue publishes msgs and waits until the tasks stream has stored
// every one (pubacks.go).
func (b *Bus) Enqueue(ctx context.Context, queue string, msgs ...Message) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if !validToken(queue) {
		return fmt.Errorf("natsbus: queue name %q: must be one subject token", queue)
	}
	nms := make([]*nats.Msg, len(msgs))
	// A queue message goes on its queue's subject. Its key is the
	// subject's last token, not a header: a message without headers costs
	// less to publish, store, deliver and parse (taskKey reads it back).
	// The last key's subject serves the next message: a batch is mostly
	// one job's.
	var key, subject string
	for i, m := range msgs {
		if err := b.checkSize(m); err != nil {
			return err
		}
		if subject == "" || m.Key != key {
			key, subject = m.Key, b.taskSubject(queue, m.Key)
		}
		m.Key = ""
		nms[i] = toNats(subject, m)
		if m.ID != "" {
			if nms[i].Header == nil {
				nms[i].Header = nats.Header{}
			}
			nms[i].Header.Set(jetstream.MsgIDHeader, m.ID)
		}
	}
	if err := b.acks.publish(ctx, nms); err != nil {
		b.noStream(err, "enqueueing")
		return fmt.Errorf("natsbus: enqueue on %s: %w", queue, err)
	}
	return nil
}

func (b *Bus) consumer(ctx context.Context, queue string, o bus.QueueOptions) (jetstream.Consumer, error) {
	b.mu.Lock()
	c, ok := b.consumers[queue]
	b.mu.Unlock()
	if ok {
		return c, nil
	}
	name := "q-" + queue
	cc := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Skein workers of queue " + queue,
		FilterSubject: b.opts.Prefix + ".task." + queue + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.Lease,
		MaxDeliver:    o.MaxAttempts + 1,
		MaxAckPending: 1 << 20,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      b.opts.Replicas,
	}
	if o.Transient {
		cc.InactiveThreshold = 5 * time.Minute
	}
	// A pool the user may not take (deploy/nats -p) is refused at once.
	wctx, stop := b.denied.watch(ctx, "$JS.API.CONSUMER.CREATE."+b.tasksStream+"."+name+".")
	c, err := b.js.CreateOrUpdateConsumer(wctx, b.tasksStream, cc)
	err = deniedErr(wctx, err)
	stop()
	if err != nil {
		b.noStream(err, "opening a queue")
		return nil, fmt.Errorf("natsbus: consumer for queue %s: %w", queue, err)
	}
	// The stream may have been made again by another program, this
	// bus's pulls finding only its consumer gone: what was delivered from
	// the old one must not be settled on the new one (delivery.Revoked).
	if s, err := b.js.Stream(ctx, b.tasksStream); err == nil {
		b.sawTasks(s.CachedInfo().Created)
	}
	b.mu.Lock()
	b.consumers[queue] = c
	b.mu.Unlock()
	return c, nil
}

// Consume pulls from the queue's shared durable consumer.
func (b *Bus) Consume(ctx context.Context, queue string, o bus.QueueOptions) (<-chan bus.Delivery, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	if !validToken(queue) {
		return nil, fmt.Errorf("natsbus: queue name %q: must be one subject token", queue)
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 1
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	c, err := b.consumer(ctx, queue, o)
	if err != nil {
		return nil, err
	}
	if o.Limit > 0 {
		return b.consumeLimited(ctx, queue, c, o), nil
	}
	win := o.Window
	if win == nil {
		win = bus.NewWindow(o.Prefetch)
	}
	return b.consumeWindow(ctx, queue, c, o, win), nil
}

// forgetConsumer drops the cached consumer of queue, so that the next
// b.consumer creates it again.
func (b *Bus) forgetConsumer(queue string) {
	b.mu.Lock()
	delete(b.consumers, queue)
	b.mu.Unlock()
}

// pullRetry is the backoff of a failing pull: it resets once a message
// arrives.
var pullRetry = retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}

// reopenTimeout bounds one attempt to open an iterator again.
const reopenTimeout = 5 * time.Second

// pump moves an iterator's messages, converted by conv, to out until ctx
// ends or the bus closes; out is closed then.
//
// A failing pull is retried with exponential backoff (pullRetry), reset
// by the next message, and logged once per streak of failures, then once
// more when it recovers. With reopen set (queues: the durable consumer
// again; streams: a new ordered consumer after the last message
// delivered), a failed iterator is stopped and reopen makes a new one;
// without it the same iterator is asked again, and its end
// (ErrMsgIteratorClosed) ends the pump.
//
// The function returned stops the current iterator: with reopen set, the
// pump makes a new one.
func pump[T any](b *Bus, ctx context.Context, it jetstream.MessagesContext, reopen func(context.Context) (jetstream.MessagesContext, error), out chan<- T, what string, conv func(jetstream.Msg) T) (restart func()) {
	pctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex // guards cur
	cur := it
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		select {
		case <-pctx.Done():
		case <-b.closed:
		}
		cancel()
		mu.Lock()
		if cur != nil {
			cur.Stop()
		}
		mu.Unlock()
	}()
	next := func() (jetstream.Msg, error) {
		mu.Lock()
		it := cur
		mu.Unlock()
		if it == nil {
			rctx, rcancel := context.WithTimeout(pctx, reopenTimeout)
			nit, err := reopen(rctx)
			rcancel()
			if err != nil {
				if pctx.Err() != nil {
					return nil, retry.Permanent(pctx.Err())
				}
				return nil, fmt.Errorf("open again: %w", err)
			}
			mu.Lock()
			if pctx.Err() != nil {
				mu.Unlock()
				nit.Stop()
				return nil, retry.Permanent(pctx.Err())
			}
			cur, it = nit, nit
			mu.Unlock()
		}
		m, err := it.Next()
		switch {
		case err == nil:
			return m, nil
		case pctx.Err() != nil:
			return nil, retry.Permanent(pctx.Err())
		case reopen == nil && errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil, retry.Permanent(err)
		case reopen != nil:
			it.Stop()
			mu.Lock()
			if cur == it {
				cur = nil
			}
			mu.Unlock()
		}
		return nil, err
	}
	go func() {
		defer b.wg.Done()
		defer close(out)
		defer cancel()
		failures := 0
		p := pullRetry
		// A missed heartbeat or two is what a starved CPU looks like and
		// heals by itself: say so only at debug level; warn once when the
		// failures persist.
		const persistent = 3
		p.OnRetry = func(_ int, err error, wait time.Duration) {
			failures++
			switch {
			case failures == persistent:
				b.log.Warn("natsbus: pull failing; retrying with backoff", "from", what, "err", err, "failures", failures, "wait", wait)
			case failures < persistent:
				b.log.Debug("natsbus: pull failed; retrying", "from", what, "err", err, "wait", wait)
			}
		}
		for {
			m, err := retry.Value(pctx, p, next)
			if err != nil {
				if pctx.Err() == nil {
					b.log.Error("natsbus: pull ended", "from", what, "err", err)
				}
				return
			}
			if failures >= persistent {
				b.log.Info("natsbus: pull recovered", "from", what, "failures", failures)
			}
			failures = 0
			select {
			case out <- conv(m):
			case <-pctx.Done():
				return
			}
		}
	}()
	return func() {
		mu.Lock()
		if cur != nil {
			cur.Stop()
		}
		mu.Unlock()
	}
}

func (b *Bus) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

type delivery struct {
	m       *nats.Msg
	nc      *nats.Conn
	queue   string
	attempt int
	// gen is the task stream's generation the delivery came from, and
	// gens the bus's current one (nil: not a queue's delivery).
	gen     uint64
	gens    *atomic.Uint64
	mu      sync.Mutex
	settled bool
	// release, when set, is called once by the first final settle (Ack,
	// Nak or Term, whether the server confirmed it or not): it frees the
	// delivery's room in its consumer's window.
	release func()
}

func (b *Bus) newDelivery(m jetstream.Msg, queue string) *delivery {
	return b.newDeliveryMsg(&nats.Msg{Subject: m.Subject(), Reply: m.Reply(), Data: m.Data(), Header: m.Headers()}, queue, b.tasksGen.Load())
}

// newDeliveryMsg is a delivery of queue from the task stream's generation
// gen.
func (b *Bus) newDeliveryMsg(m *nats.Msg, queue string, gen uint64) *delivery {
	d := &delivery{m: m, nc: b.nc, queue: queue, attempt: 1, gen: gen, gens: &b.tasksGen}
	if n, ok := numDelivered(m.Reply); ok {
		d.attempt = int(n)
	}
	return d
}

// numDelivered reads a delivery's count from its acknowledgement subject,
// as Msg.Metadata does, without the rest of the metadata (which parses
// five numbers and allocates, for every task):
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.…  (11 tokens or more)
func numDelivered(reply string) (uint64, bool) {
	if !strings.HasPrefix(reply, "$JS.ACK.") {
		return 0, false
	}
	var pos int
	switch n := strings.Count(reply, ".") + 1; {
	case n == 9:
		pos = 4
	case n >= 11:
		pos = 6
	default:
		return 0, false
	}
	tok := reply
	for range pos {
		_, tok, _ = strings.Cut(tok, ".")
	}
	tok, _, _ = strings.Cut(tok, ".")
	v, err := strconv.ParseUint(tok, 10, 64)
	return v, err == nil
}

func (d *delivery) Message() Message {
	// Message.Subject of a queue message is the queue's name.
	if len(d.m.Header) == 0 {
		// A task's message, most of the time: its key is the subject's.
		return Message{Subject: d.queue, Data: d.m.Data, Key: taskKey(d.m.Subject)}
	}
	m := fromNats(d.queue, d.m)
	if m.Key == "" {
		m.Key = taskKey(d.m.Subject)
	}
	return m
}
func (d *delivery) Attempt() int { return d.attempt }

// settleTimeout bounds a settle whose ctx has no deadline, as jetstream
// bounds DoubleAck: a reply lost on a reconnection must not hang a
// runtime's slot.
const settleTimeout = 5 * time.Second

// settleRetry paces the settles sent again while a replicated consumer
// has no leader.
var settleRetry = retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}

// settle sends one acknowledgement and waits for the server's reply
// (every kind of acknowledgement is answered when it carries a reply
// subject: nats-server's consumer.processAck, already in 2.9). "No
// responders" means that nobody leads the consumer at the moment — on a
// cluster, its leader's node died and the others elect a new one, which
// holds the same pending deliveries — so the settle is sent again until
// ctx ends. A delivery whose settle failed stays unsettled: the caller
// may try again, or the lease runs out and the message is redelivered.
func (d *delivery) settle(ctx context.Context, what string, final bool, f func(ctx context.Context) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return bus.ErrSettled
	}
	if d.Revoked() {
		// Sent, it would reach the durable consumer of the stream made
		// again, under the same name, and settle whatever that stream
		// holds at the old sequence.
		if final {
			d.releaseRoom()
		}
		return fmt.Errorf("natsbus: %s: %w", what, errGone)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, settleTimeout)
		defer cancel()
	}
	err := retry.Do(ctx, settleRetry, func() error {
		err := f(ctx)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			return retry.Permanent(err)
		}
		return err
	})
	if final {
		d.releaseRoom()
	}
	if err != nil {
		return fmt.Errorf("natsbus: %s: %w", what, err)
	}
	d.settled = final
	return nil
}

// releaseRoom frees the delivery's room in its consumer's window, once.
// Called with d.mu held.
func (d *delivery) releaseRoom() {
	if d.release != nil {
		d.release()
		d.release = nil
	}
}

// errGone is the settle of a delivery whose task stream was made again.
var errGone = errors.New("the task stream was made again (the server lost its store?): the message is gone with the stream it came from")

// Revoked implements bus.Revocable: the task stream the delivery came
// from was made again (restore.go), and the message is gone with it.
func (d *delivery) Revoked() bool { return d.gens != nil && d.gens.Load() != d.gen }

// request sends an acknowledgement body to the delivery's reply subject
// and waits for the server's answer.
func (d *delivery) request(body []byte) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := d.nc.RequestWithContext(ctx, d.m.Reply, body)
		return err
	}
}

// Ack returns once the server has applied the ack to the consumer
// (jetstream's DoubleAck). On a work-queue stream the server removes
// the message from the stream right after, asynchronously.
func (d *delivery) Ack(ctx context.Context) error {
	return d.settle(ctx, "ack", true, d.request([]byte("+ACK")))
}

// AckAll implements bus.BatchAcker. On a single server it publishes the
// acks and confirms them all with one round trip (a flush: the server
// handles a connection's messages in order, so the PONG comes after it
// has taken every ack), instead of a reply per ack: half the messages and
// far less work per task. With replicated streams the consumer's leader
// may be changing, so each ack waits for its own reply (Ack), all at once.
func (b *Bus) AckAll(ctx context.Context, ds []bus.Delivery) []error {
	errs := make([]error, len(ds))
	if b.opts.Replicas > 1 {
		var wg sync.WaitGroup
		for i, x := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = x.Ack(ctx)
			}()
		}
		wg.Wait()
		return errs
	}
	sent := make([]int, 0, len(ds))
	for i, x := range ds {
		d, ok := x.(*delivery)
		if !ok {
			errs[i] = x.Ack(ctx)
			continue
		}
		d.mu.Lock()
		switch {
		case d.settled:
			errs[i] = bus.ErrSettled
		case d.Revoked():
			errs[i] = fmt.Errorf("natsbus: ack: %w", errGone)
			d.releaseRoom()
		default:
			// Published here rather than with jetstream's Ack, which
			// would refuse the DoubleAck of a retry after a failed
			// flush.
			if err := d.nc.Publish(d.m.Reply, []byte("+ACK")); err != nil {
				errs[i] = fmt.Errorf("natsbus: ack: %w", err)
			} else {
				sent = append(sent, i)
			}
		}
		d.mu.Unlock()
	}
	if len(sent) == 0 {
		return errs
	}
	fctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, settleTimeout)
		defer cancel()
	}
	err := b.nc.FlushWithContext(fctx)
	for _, i := range sent {
		d := ds[i].(*delivery)
		d.mu.Lock()
		if err != nil {
			errs[i] = fmt.Errorf("natsbus: ack: %w", err)
		} else {
			d.settled = true
		}
		d.releaseRoom()
		d.mu.Unlock()
	}
	return errs
}

// Nak returns once the server has scheduled the redelivery.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	body := []byte("-NAK")
	if delay > 0 {
		body = fmt.Appendf(nil, "-NAK {\"delay\": %d}", delay.Nanoseconds())
	}
	return d.settle(ctx, "nak", true, d.request(body))
}

// Term returns once the server has dropped the message. The reason is
// the caller's to log: TermWithReason needs a 2.10 server and Debian
// ships 2.9.
func (d *delivery) Term(ctx context.Context, reason string) error {
	return d.settle(ctx, "term", true, d.request([]byte("+TERM")))
}

// InProgress returns once the server has reset the lease.
func (d *delivery) InProgress(ctx context.Context) error {
	return d.settle(ctx, "in progress", false, d.request([]byte("+WPI")))
}

// Publish stores msg on the event stream.
func (b *Bus) Publish(ctx context.Context, subject string, m Message) error {
	_, err := b.PublishSeq(ctx, subject, m)
	return err
}

// PublishSeq stores msg on the event stream and returns its stream
// sequence, which the server's PubAck carries: it costs no more than
// Publish. A duplicate of an earlier message ID (within the stream's
// deduplication window) returns the original's sequence.
func (b *Bus) PublishSeq(ctx context.Context, subject string, m Message) (uint64, error) {
	if b.isClosed() {
		return 0, bus.ErrClosed
	}
	if err := b.checkSize(m); err != nil {
		return 0, err
	}
	var po []jetstream.PublishOpt
	if m.ID != "" {
		po = append(po, jetstream.WithMsgID(m.ID))
	}
	ack, err := b.js.PublishMsg(ctx, toNats(b.opts.Prefix+".ev."+subject, m), po...)
	if err != nil {
		b.noStream(err, "publishing")
		return 0, fmt.Errorf("natsbus: publish %s: %w", subject, err)
	}
	return ack.Sequence, nil
}

// Subscribe replays and follows the event stream with an ordered consumer.
//
// The ordered consumer recreates itself when it misses messages or
// heartbeats, under a name fixed for that recovery: on a cluster, a
// recreation whose consumer was placed on a node that then died retries
// that same consumer forever. So the bus lets the library try once
// (MaxResetAttempts) and, when that fails, makes a new ordered consumer
// itself — a new name, placed again — that resumes after the last
// message delivered.
func (b *Bus) Subscribe(ctx context.Context, pattern string, o bus.SubscribeOptions) (<-chan Message, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{b.opts.Prefix + ".ev." + pattern},
		InactiveThreshold: 30 * time.Second,
		MaxResetAttempts:  1,
	}
	b.watchCreations()
	var created time.Time // the stream's, when known here (else the bus's)
	switch {
	case o.From > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = o.From
	case o.Since.IsZero():
		// "From now on" is pinned to a sequence: the consumer is made
		// again after a lost server or node (by nats.go or by reopen), and
		// made "from now on" again before its first message it would skip
		// what was published in between.
		st, err := b.js.Stream(ctx, b.eventsStream)
		if err != nil {
			b.noStream(err, "subscribing")
			return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = st.CachedInfo().State.LastSeq + 1
		created = st.CachedInfo().Created
		b.sawEvents(created)
	default:
		t := o.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	}
	// A missed heartbeat (every 2.5 s with a 5 s expiry) is how a pull
	// on a dead node shows.
	pullOpts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(1024), jetstream.PullExpiry(5 * time.Second)}
	c, err := b.js.OrderedConsumer(ctx, b.eventsStream, cfg)
	if err != nil {
		b.noStream(err, "subscribing")
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
	}
	it, err := c.Messages(pullOpts...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
	}
	// The subscription follows its stream by creation time (restore.go).
	sub, unfollow := b.follow(created)
	var last atomic.Uint64 // stream sequence of the last message delivered
	reopen := func(ctx context.Context) (jetstream.MessagesContext, error) {
		rc := cfg
		st, err := b.js.Stream(ctx, b.eventsStream)
		if err != nil {
			b.noStream(err, "subscribing again")
			return nil, err
		}
		now := st.CachedInfo().Created
		same := sub.sameStream(now)
		switch {
		case !same && o.To > 0:
			return nil, retry.Permanent(errStreamReplaced)
		case !same:
			// Made again since this subscription read it: the new
			// stream's messages are all new to it, also at a later
			// reopen before any of them came (the start position it
			// was made with is the old stream's).
			b.sawEvents(now)
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverAllPolicy, 0, nil
			rc = cfg
			last.Store(0)
		case last.Load() > 0:
			rc.DeliverPolicy, rc.OptStartSeq, rc.OptStartTime = jetstream.DeliverByStartSequencePolicy, last.Load()+1, nil
		}
		c, err := b.js.OrderedConsumer(ctx, b.eventsStream, rc)
		if err != nil {
			return nil, err
		}
		return c.Messages(pullOpts...)
	}
	prefix := b.opts.Prefix + ".ev."
	conv := func(m jetstream.Msg) positioned {
		msg := fromNats(strings.TrimPrefix(m.Subject(), prefix), &nats.Msg{Data: m.Data(), Header: m.Headers()})
		var pending uint64
		if md, err := m.Metadata(); err == nil {
			msg.Time, msg.Seq, pending = md.Timestamp, md.Sequence.Stream, md.NumPending
			last.Store(msg.Seq)
		}
		return positioned{msg, pending}
	}
	if o.To == 0 {
		out := make(chan Message, 256)
		sub.pumping(pump(b, ctx, it, reopen, out, "stream "+pattern, func(m jetstream.Msg) Message { return conv(m).Message }))
		context.AfterFunc(ctx, unfollow)
		return out, nil
	}
	return b.readTo(ctx, it, reopen, c.CachedInfo(), pattern, o, conv, sub, unfollow), nil
}

// positioned is a stream message and how many messages matching its
// subscription the server held after it when it was sent.
type positioned struct {
	Message
	pending uint64
}

// readTo delivers a subscription's messages up to position o.To. The
// consumer is filtered on the server, so the end is known from the
// server's count of the matching messages left: the messages up to To
// are all stored before the subscription starts, so once none is left
// (at creation, or after a delivered message) every one has been read.
func (b *Bus) readTo(ctx context.Context, it jetstream.MessagesContext, reopen func(context.Context) (jetstream.MessagesContext, error), info *jetstream.ConsumerInfo, pattern string, o bus.SubscribeOptions, conv func(jetstream.Msg) positioned, sub *eventsSub, unfollow func()) <-chan Message {
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(ctx, unfollow)
	raw := make(chan positioned, 256)
	sub.pumping(pump(b, ctx, it, reopen, raw, "stream "+pattern, conv))
	out := make(chan Message, 256)
	if (info != nil && info.NumPending == 0) || o.From > o.To {
		cancel()
		close(out)
		return out
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		defer cancel()
		for m := range raw {
			if m.Seq > o.To {
				return
			}
			select {
			case out <- m.Message:
			case <-ctx.Done():
				return
			}
			if m.Seq >= o.To || m.pending == 0 {
				return
			}
		}
	}()
	return out
}

// Notify publishes on core NATS (no storage).
func (b *Bus) Notify(ctx context.Context, subject string, data []byte) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if int64(len(data)) > b.nc.MaxPayload() {
		return fmt.Errorf("%w: broadcast of %d bytes, limit %d", bus.ErrTooLarge, len(data), b.nc.MaxPayload())
	}
	if err := b.nc.Publish(b.opts.Prefix+".bc."+subject, data); err != nil {
		return fmt.Errorf("natsbus: notify %s: %w", subject, err)
	}
	return nil
}

// Listen subscribes on core NATS; a slow reader drops messages.
func (b *Bus) Listen(ctx context.Context, pattern string) (<-chan Message, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	prefix := b.opts.Prefix + ".bc."
	out := make(chan Message, 1024)
	var mu sync.Mutex
	done := false
	sub, err := b.nc.Subscribe(prefix+pattern, func(nm *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		select {
		case out <- fromNats(strings.TrimPrefix(nm.Subject, prefix), nm):
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("natsbus: listen %s: %w", pattern, err)
	}
	// Listening starts when Listen returns.
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("natsbus: listen %s: %w", pattern, err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-ctx.Done():
		case <-b.closed:
		}
		_ = sub.Unsubscribe()
		mu.Lock()
		done = true
		close(out)
		mu.Unlock()
	}()
	return out, nil
}

const errHeader = "Skein-Error"

// stoppingHeader marks the reply of a server that stopped serving while
// the request was on its way (or in its handler): the requester gets
// bus.ErrNoResponders and may ask again, to reach another server of the
// queue group, instead of waiting for a reply that never comes.
const stoppingHeader = "Skein-Stopping"

// Request sends a core NATS request.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	m := nats.NewMsg(b.opts.Prefix + ".rpc." + subject)
	m.Data = data
	if int64(len(data)) > b.nc.MaxPayload() {
		return nil, fmt.Errorf("%w: request of %d bytes, limit %d", bus.ErrTooLarge, len(data), b.nc.MaxPayload())
	}
	ctx, stop := b.denied.watch(ctx, m.Subject)
	defer stop()
	resp, err := b.request(ctx, m)
	err = deniedErr(ctx, err)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w on %s", bus.ErrNoResponders, subject)
		}
		return nil, fmt.Errorf("natsbus: request %s: %w", subject, err)
	}
	if resp.Header.Get(stoppingHeader) != "" {
		return nil, fmt.Errorf("%w on %s: the server that took the request stopped serving", bus.ErrNoResponders, subject)
	}
	if e := resp.Header.Get(errHeader); e != "" {
		return nil, &bus.RemoteError{Msg: e}
	}
	return resp.Data, nil
}

// serveConcurrency bounds the handlers one Serve runs at once; more
// requests wait in the subscription's buffer.
const serveConcurrency = 64

// noRespondersGrace is how long Request keeps asking while nobody
// answers. In a cluster a new subscription reaches the other servers a
// moment after Serve returns (routes carry interest asynchronously), so a
// request sent through another server at once may find nobody.
const noRespondersGrace = 500 * time.Millisecond

func (b *Bus) request(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	deadline := time.Now().Add(noRespondersGrace)
	wait := 10 * time.Millisecond
	for {
		resp, err := b.nc.RequestMsgWithContext(ctx, m)
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().Add(wait).After(deadline) {
			return resp, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Serve answers requests on subject in the "skein" queue group, each on
// its own goroutine (at most serveConcurrency at once), so that a slow
// handler holds up only its own requester. Handlers get a ctx that ends
// with Serve's ctx or the bus' Close; both wait for running handlers.
func (b *Bus) Serve(ctx context.Context, subject string, h bus.Handler) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	hctx, hcancel := context.WithCancel(ctx)
	var (
		mu       sync.Mutex
		stopped  bool
		handlers sync.WaitGroup
		slots    = make(chan struct{}, serveConcurrency)
	)
	sub, err := b.nc.QueueSubscribe(b.opts.Prefix+".rpc."+subject, "skein", func(nm *nats.Msg) {
		select {
		case slots <- struct{}{}:
		case <-hctx.Done():
			b.stopping(nm)
			return
		}
		mu.Lock()
		if stopped {
			mu.Unlock()
			<-slots
			b.stopping(nm)
			return
		}
		handlers.Add(1)
		mu.Unlock()
		go func() {
			defer handlers.Done()
			defer func() { <-slots }()
			b.answer(hctx, subject, h, nm)
		}()
	})
	if err != nil {
		hcancel()
		return fmt.Errorf("natsbus: serve %s: %w", subject, err)
	}
	// Serving starts when Serve returns: the server must know the
	// subscription before a request can find it. (The other servers of
	// a cluster learn of it a moment later: see noRespondersGrace.)
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		hcancel()
		return fmt.Errorf("natsbus: serve %s: %w", subject, err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-ctx.Done():
		case <-b.closed:
		}
		// Drain, not Unsubscribe: requests already delivered to this
		// connection still reach the callback, which answers them as
		// stopping, rather than being dropped unanswered.
		hcancel()
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
		}
		mu.Lock()
		stopped = true
		mu.Unlock()
		handlers.Wait()
	}()
	return nil
}

// answer runs h for one request and sends its reply.
func (b *Bus) answer(ctx context.Context, subject string, h bus.Handler, nm *nats.Msg) {
	if !strings.HasPrefix(nm.Reply, "_INBOX.") {
		// A reply subject outside the inboxes would make this server
		// publish its answer wherever a requester points it (on the
		// event stream, say) with the server's own rights.
		b.log.Warn("natsbus: request dropped: its reply subject is not an inbox", "subject", subject, "reply", nm.Reply)
		return
	}
	resp := nats.NewMsg(nm.Reply)
	out, err := h(ctx, fromNats(subject, nm))
	switch {
	case err != nil && ctx.Err() != nil:
		b.stopping(nm) // cut short by the end of serving
		return
	case err != nil:
		resp.Header.Set(errHeader, err.Error())
	default:
		resp.Data = out
	}
	if err := nm.RespondMsg(resp); err != nil {
		b.log.Warn("natsbus: respond", "subject", subject, "err", err)
	}
}

// stopping answers a request that this server will not handle: it
// stopped serving.
func (b *Bus) stopping(nm *nats.Msg) {
	if !strings.HasPrefix(nm.Reply, "_INBOX.") {
		return
	}
	resp := nats.NewMsg(nm.Reply)
	resp.Header.Set(stoppingHeader, "1")
	_ = nm.RespondMsg(resp)
}

// Close drains nothing: unsettled deliveries are redelivered by the
// server after their lease.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		// Under streams.mu: restoreStreams, run by the connection's
		// reconnect handler at any time, adds to wg only while the bus
		// is open, so never during the Wait.
		b.streams.mu.Lock()
		close(b.closed)
		b.streams.mu.Unlock()
		done := make(chan struct{})
		go func() { b.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			// A pull that the library's Stop did not end (an ordered
			// consumer caught resetting itself after a reconnection,
			// seen once in a few runs of pkg/cli's
			// TestBrokerBackWithAnEmptyStore: the submit hung in Close
			// for good) ends with the connection.
			b.log.Debug("natsbus: closing the connection under a pull that did not stop")
			b.nc.Close()
			select {
			case <-done:
			case <-time.After(closeWait):
				b.log.Warn("natsbus: a subscription did not stop; closing without it")
			}
		}
		b.nc.Close()
	})
	return nil
}

// closeWait bounds each of Close's waits for the bus's goroutines.
const closeWait = 2 * time.Second

// Conn exposes the underlying connection (benchmarks, diagnostics).
func (b *Bus) Conn() *nats.Conn { return b.nc }

// validSubject reports whether s is dot-separated tokens without
// wildcards.
func validSubject(s string) bool {
	for _, t := range strings.Split(s, ".") {
		if t == "" || strings.ContainsAny(t, "*> \t") {
			return false
		}
	}
	return true
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// redact removes credentials from a URL list for logs and errors.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("REDACTED")
			parts[i] = u.String()
		} else if err != nil {
			parts[i] = "<unparseable URL>"
		}
	}
	return strings.Join(parts, ",")
}
