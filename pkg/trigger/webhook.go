package trigger

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Bus kinds (Config.BusKind): where webhook events are recorded.
const (
	BusNATS = "nats"
	BusAMQP = "amqp"
)

// WebhookPath is the path under which a coordinator's webhook listener
// takes events: POST WebhookPath+<name> runs the triggers whose source is
// {"webhook": name}.
const WebhookPath = "/webhook/"

// DefaultWebhookMaxBody bounds a webhook request's body: an S3 bucket
// notification is a few kilobytes.
const DefaultWebhookMaxBody = 256 << 10

// drainLimit is how much of a body too large the webhook reads before it
// answers 413.
const drainLimit = 1 << 20

// webhookSubject is where a NATS bus records trigger's webhook events:
// under the namespace's notification stream, one subject per trigger, so
// that its durable consumer reads only its own.
func webhookSubject(ns, trigger string) string { return ns + ".notify.webhook." + trigger }

// webhookQueue is the durable queue that records trigger's webhook events
// on a RabbitMQ bus.
func webhookQueue(ns, trigger string) string { return ns + ".webhook." + trigger }

// WebhookConfig configures a coordinator's webhook listener.
type WebhookConfig struct {
	// Addr is the host:port to listen on: loopback unless Public.
	Addr   string
	Public bool
	// Tokens are the secrets a request may present (Authorization:
	// Bearer TOKEN, or ?token=TOKEN for senders that can only be given a
	// URL); more than one while a token is being replaced. At least one,
	// each of 16 characters or more.
	Tokens []string
	// MaxBody bounds a request's body (default DefaultWebhookMaxBody).
	MaxBody int64
	// TLSCert and TLSKey, both or neither, are the PEM files of the
	// listener's certificate (chain) and key: with them it speaks HTTPS
	// only (TLS 1.2 or newer), and takes up a renewed pair at the next
	// handshake after the files change.
	TLSCert, TLSKey string
}

// ErrWebhookPublic is returned for a listener address beyond loopback
// without WebhookConfig.Public.
var ErrWebhookPublic = errors.New("the webhook listens on loopback unless --webhook-public is given")

// CheckWebhookAddr checks a listener address: host:port, on loopback
// unless public.
func CheckWebhookAddr(addr string, public bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("webhook address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if public || host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("webhook address %q: %w", addr, ErrWebhookPublic)
}

// Validate reports every bad field of c.
func (c *WebhookConfig) Validate() error {
	var errs []error
	if err := CheckWebhookAddr(c.Addr, c.Public); err != nil {
		errs = append(errs, err)
	}
	if len(c.Tokens) == 0 {
		errs = append(errs, errors.New("webhook tokens: at least one (every request must present it)"))
	}
	for i, t := range c.Tokens {
		if len(t) < 16 {
			errs = append(errs, fmt.Errorf("webhook token %d: shorter than 16 characters", i+1))
		}
	}
	if c.MaxBody < 0 {
		errs = append(errs, errors.New("webhook max body: must not be negative"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("webhook TLS: give both the certificate and its key, or neither"))
	}
	return errors.Join(errs...)
}

// ServeWebhook listens on cfg.Addr and takes webhook events there until
// the runner is closed; it returns the address bound. Each POST to
// WebhookPath+<name> that presents a token, carries a body the name's
// triggers can read (an S3 bucket notification for format "s3") and is
// no larger than cfg.MaxBody is recorded on the bus, once for each
// trigger of that name, and answered 200 only once the broker has
// confirmed every record. The triggers then run the records as a NATS or
// AMQP source's messages: a coordinator killed after the answer leaves
// them on the bus for itself restarted or another coordinator.
func (r *Runner) ServeWebhook(cfg WebhookConfig) (net.Addr, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultWebhookMaxBody
	}
	switch {
	case r.cfg.BusKind == BusNATS && r.cfg.DialNATS != nil, r.cfg.BusKind == BusAMQP && r.cfg.DialAMQP != nil:
	default:
		return nil, errors.New("this coordinator cannot record webhook events (no bus kind or dialer)")
	}
	var pair *keyPair
	if cfg.TLSCert != "" {
		var err error
		if pair, err = loadKeyPair(cfg.TLSCert, cfg.TLSKey, r.log); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	srv := &http.Server{
		Handler:           r.webhookHandler(cfg),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if pair != nil {
		srv.TLSConfig = pair.tlsConfig()
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	} else if cfg.Public {
		r.log.Warn("webhook listening beyond loopback without TLS: its tokens cross the network in clear (--webhook-tls-cert, --webhook-tls-key)", "addr", ln.Addr().String())
	}
	r.hookMu.Lock()
	if r.hookClosed {
		r.hookMu.Unlock()
		ln.Close()
		return nil, errors.New("the trigger runner is closed")
	}
	r.hookSrvs = append(r.hookSrvs, srv)
	r.hookMu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("webhook listener stopped", "err", err)
		}
	}()
	r.log.Info("webhook listening", "addr", ln.Addr().String(), "scheme", scheme, "path", WebhookPath+"<name>")
	return ln.Addr(), nil
}

// closeWebhooks stops the listeners, letting requests under way finish
// their records; ServeWebhook starts none after it.
func (r *Runner) closeWebhooks() {
	r.hookMu.Lock()
	r.hookClosed = true
	srvs := r.hookSrvs
	r.hookSrvs = nil
	r.hookMu.Unlock()
	for _, s := range srvs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s.Shutdown(ctx) != nil {
			s.Close()
		}
		cancel()
	}
}

// hookStatus is a refused request: its status code and what to tell the
// sender.
type hookStatus struct {
	code int
	msg  string
}

func (r *Runner) webhookHandler(cfg WebhookConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name, n, st := r.webhookServe(req, cfg)
		if st.code != http.StatusOK {
			// Never the URL: its query may hold the token.
			attrs := []any{"status", st.code, "reason", st.msg, "remote", req.RemoteAddr}
			if name != "" {
				attrs = append(attrs, "webhook", name)
			}
			r.log.Warn("webhook request refused", attrs...)
			if st.code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="skein-webhook"`)
			}
			if st.code == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", http.MethodPost)
			}
			if st.code == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			http.Error(w, st.msg, st.code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"recorded": n})
	})
}

// webhookServe checks and records one request; it returns the webhook's
// name (once a trigger of that name is known), the records made, and the
// status.
func (r *Runner) webhookServe(req *http.Request, cfg WebhookConfig) (string, int, hookStatus) {
	switch tokenOK(req, cfg.Tokens) {
	case tokenMissing:
		return "", 0, hookStatus{http.StatusUnauthorized, "a token is required: Authorization: Bearer TOKEN, or ?token=TOKEN"}
	case tokenWrong:
		return "", 0, hookStatus{http.StatusForbidden, "the token is not accepted"}
	}
	name, ok := strings.CutPrefix(req.URL.Path, WebhookPath)
	if !ok || !validName(name, 40) {
		return "", 0, hookStatus{http.StatusNotFound, "no such webhook: POST " + WebhookPath + "<name>"}
	}
	defs := r.hooked(name)
	if len(defs) == 0 {
		return "", 0, hookStatus{http.StatusNotFound, "no trigger has this webhook"}
	}
	if req.Method != http.MethodPost {
		return name, 0, hookStatus{http.StatusMethodNotAllowed, "POST an event"}
	}
	tooLarge := func() (string, int, hookStatus) {
		// Read a little more, so that a sender still writing its body
		// reads the answer rather than a reset connection; past that the
		// connection is closed.
		_, _ = io.CopyN(io.Discard, req.Body, drainLimit)
		return name, 0, hookStatus{http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", cfg.MaxBody)}
	}
	if req.ContentLength > cfg.MaxBody {
		return tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, cfg.MaxBody+1))
	if err != nil {
		return name, 0, hookStatus{http.StatusBadRequest, "reading the body: " + err.Error()}
	}
	if int64(len(body)) > cfg.MaxBody {
		return tooLarge()
	}
	recs, err := webhookRecords(defs, body)
	if err != nil {
		return name, 0, hookStatus{http.StatusBadRequest, err.Error()}
	}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	for _, rec := range recs {
		if err := r.hookPublish(ctx, rec.def, rec.id, body); err != nil {
			r.log.Warn("recording a webhook event", "webhook", name, "trigger", rec.def.Name, "event", rec.id, "err", err)
			return name, 0, hookStatus{http.StatusServiceUnavailable, "the event could not be recorded on the bus; send it again"}
		}
	}
	for _, rec := range recs {
		r.log.Debug("webhook event recorded", "webhook", name, "trigger", rec.def.Name, "event", rec.id)
	}
	return name, len(recs), hookStatus{code: http.StatusOK}
}

// hooked returns the triggers whose source is webhook name.
func (r *Runner) hooked(name string) []Def {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Def
	for _, rec := range r.defs {
		if rec.Def.Source.Webhook == name {
			out = append(out, rec.Def)
		}
	}
	return out
}

type hookRecord struct {
	def Def
	id  string
}

// webhookRecords checks body against each trigger's format and returns
// the records to make: one per trigger whose event has inputs (an S3 test
// event, or a notification of removals only, has none: it is answered
// and not recorded).
func webhookRecords(defs []Def, body []byte) ([]hookRecord, error) {
	if !json.Valid(body) {
		return nil, errors.New("the body is not JSON")
	}
	var out []hookRecord
	for _, d := range defs {
		if d.Source.Format == "s3" {
			test, err := CheckS3(body)
			if err != nil {
				return nil, err
			}
			if test {
				continue
			}
		}
		ev, err := parse(d, "", body)
		if err != nil {
			return nil, err
		}
		if len(ev.Inputs) > 0 {
			out = append(out, hookRecord{def: d, id: ev.ID})
		}
	}
	return out, nil
}

type tokenResult int

const (
	tokenGood tokenResult = iota
	tokenMissing
	tokenWrong
)

// tokenOK checks the request's token against tokens, in constant time
// (hashes of equal length are compared, each of them).
func tokenOK(req *http.Request, tokens []string) tokenResult {
	given := ""
	if scheme, t, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		given = strings.TrimSpace(t)
	} else {
		given = req.URL.Query().Get("token")
	}
	if given == "" {
		return tokenMissing
	}
	g := sha256.Sum256([]byte(given))
	ok := 0
	for _, t := range tokens {
		h := sha256.Sum256([]byte(t))
		ok |= subtle.ConstantTimeCompare(g[:], h[:])
	}
	if ok == 1 {
		return tokenGood
	}
	return tokenWrong
}

// hookPublish records one webhook event of trigger d on the bus and
// returns once the broker confirmed it.
func (r *Runner) hookPublish(ctx context.Context, d Def, id string, body []byte) error {
	r.hookMu.Lock()
	if r.hookPubClosed {
		r.hookMu.Unlock()
		return errors.New("the coordinator is stopping")
	}
	if r.hookPub == nil {
		if r.cfg.BusKind == BusAMQP {
			r.hookPub = &amqpHookPub{r: r}
		} else {
			r.hookPub = &natsHookPub{r: r}
		}
	}
	p := r.hookPub
	r.hookMu.Unlock()
	return p.publish(ctx, d, id, body)
}

// hookPublisher records webhook events; safe for concurrent use.
type hookPublisher interface {
	publish(ctx context.Context, d Def, id string, body []byte) error
	close()
}

// natsHookPub publishes webhook events on the notification stream, with
// a message id per trigger and event: a request sent again within the
// stream's duplicate window (two minutes) is stored once.
type natsHookPub struct {
	r  *Runner
	mu sync.Mutex
	nc *nats.Conn
	js jetstream.JetStream
}

func (p *natsHookPub) conn(ctx context.Context) (jetstream.JetStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nc != nil && !p.nc.IsClosed() {
		return p.js, nil
	}
	nc, err := p.r.cfg.DialNATS(ctx, "")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = notifyStream(ctx, js, p.r.cfg.Namespace)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	p.nc, p.js = nc, js
	return js, nil
}

func (p *natsHookPub) publish(ctx context.Context, d Def, id string, body []byte) error {
	js, err := p.conn(ctx)
	if err != nil {
		return err
	}
	m := nats.NewMsg(webhookSubject(p.r.cfg.Namespace, d.Name))
	m.Data = body
	m.Header.Set("Content-Type", "application/json")
	msgID := jetstream.WithMsgID(d.Name + "/" + id)
	_, err = js.PublishMsg(ctx, m, msgID)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// The stream was deleted since: make it again.
		if _, err = notifyStream(ctx, js, p.r.cfg.Namespace); err == nil {
			_, err = js.PublishMsg(ctx, m, msgID)
		}
	}
	return err
}

func (p *natsHookPub) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nc != nil {
		p.nc.Close()
	}
}

// amqpHookPub publishes webhook events to the trigger's durable queue
// (declared first: it exists before the trigger's source opens), as
// persistent messages on a channel with publisher confirms. One publish
// at a time; after a failure the connection is opened again.
type amqpHookPub struct {
	r    *Runner
	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (p *amqpHookPub) publish(ctx context.Context, d Def, id string, body []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.try(ctx, webhookQueue(p.r.cfg.Namespace, d.Name), id, body)
	if err != nil {
		p.reset()
	}
	return err
}

func (p *amqpHookPub) try(ctx context.Context, q, id string, body []byte) error {
	if p.conn == nil || p.conn.IsClosed() {
		conn, err := p.r.cfg.DialAMQP(ctx, "")
		if err != nil {
			return err
		}
		p.conn, p.ch = conn, nil
	}
	if p.ch == nil || p.ch.IsClosed() {
		ch, err := p.conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return err
		}
		p.ch = ch
	}
	if _, err := p.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		// Declared with other arguments: use it as it is (declareQueue).
		p.ch = nil
		ch, err := declareQueue(p.conn, q)
		if err != nil {
			return err
		}
		ch.Close()
		return p.try(ctx, q, id, body)
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Timestamp: time.Now(), Body: body,
	})
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the broker refused the record (nack)")
	}
	return nil
}

func (p *amqpHookPub) reset() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}

func (p *amqpHookPub) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset()
}

// forgetQueue deletes a deleted webhook trigger's queue (RabbitMQ bus),
// so that a trigger made again under its name starts afresh.
func (r *Runner) forgetQueue(d Def) {
	if r.cfg.DialAMQP == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	conn, err := r.cfg.DialAMQP(ctx, "")
	if err != nil {
		r.log.Warn("deleting a deleted trigger's webhook queue", "trigger", d.Name, "err", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDelete(webhookQueue(r.cfg.Namespace, d.Name), false, false, false)
	}
	if err != nil {
		r.log.Warn("deleting a deleted trigger's webhook queue", "trigger", d.Name, "err", err)
	}
}
