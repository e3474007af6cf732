package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/pkg/wire"
)

// Coordinator is what the runner needs of the coordinator it runs in
// (coordinator.Coordinator).
type Coordinator interface {
	// SubmitOnce submits a spec with a fixed id; it returns an error
	// matching ErrJobExists when the id is taken (the job is on the log).
	SubmitOnce(ctx context.Context, spec *wire.JobSpec) (string, error)
	// LeaseHeld reports whether the coordinator may act now.
	LeaseHeld() bool
}

// Config configures a Runner.
type Config struct {
	// Bus is the coordinator's bus: the trigger records, the trigger API
	// and jobs sources live on it.
	Bus         bus.Bus
	Coordinator Coordinator
	// ErrJobExists is what Coordinator.SubmitOnce returns for a job on
	// the log (coordinator.ErrJobExists); ErrInvalid what it returns for
	// a job it refuses for good (coordinator.ErrInvalid: a bad template,
	// an object that is gone): such events are dropped, and logged.
	ErrJobExists, ErrInvalid error
	// Result returns a finished job's result as JSON, a list for a map
	// job (coordinator.JobResult): the inputs of a jobs source.
	Result func(ctx context.Context, job string) (json.RawMessage, error)
	// Verify, when set, checks that a message was signed by the
	// coordinators (coordinator --sign-key): the trigger and batch
	// records, and the job end records a jobs source reads. Sign signs
	// the records this runner writes. A trigger record is a job template
	// the coordinators run and sign the tasks of: on a bus shared with
	// publishers that are not trusted, an unsigned one would be a way
	// round the signatures.
	Verify func(bus.Message) bool
	Sign   func(*bus.Message)
	// DialNATS and DialAMQP connect to a NATS or AMQP source's broker;
	// url is the source's (empty: the coordinator's bus). A source of a
	// kind without a dialer fails.
	DialNATS func(ctx context.Context, url string) (*nats.Conn, error)
	DialAMQP func(ctx context.Context, url string) (*amqp.Connection, error)
	// Namespace names the streams of NATS sources (default "skein").
	Namespace string
	// BusKind is the kind of the coordinator's bus, BusNATS or BusAMQP:
	// where webhook sources record their events (empty: webhook sources
	// cannot run).
	BusKind string
	// Triggers from the config file, recorded (replacing any of the same
	// name) when the runner starts.
	Triggers []Def
	// RefreshAfter: a trigger whose newest record is older than this is
	// recorded again, so that it outlives the event stream's retention
	// (24h by default). Default 6h.
	RefreshAfter time.Duration
	Logger       *slog.Logger
}

// Runner serves the trigger API and runs every trigger of the namespace
// in the coordinator. Every coordinator of a namespace runs one: a NATS
// or AMQP source's messages go to one of them at a time; jobs sources
// are read by all, and SubmitOnce lets one job start per event.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	defs    map[string]record
	running map[string]context.CancelFunc
	// batches holds the recorded batches (batch.go): trigger -> event
	// id -> its batch.
	batches map[string]map[string]*batchRecord
	// applied is the position up to which the trigger records are
	// applied.
	applied seqWatch

	// The webhook listeners (ServeWebhook) and their publisher.
	hookMu        sync.Mutex
	hookSrvs      []*http.Server
	hookClosed    bool // no listener starts
	hookPub       hookPublisher
	hookPubClosed bool // no publisher starts
}

type record struct {
	Def  Def
	Seq  uint64    // where the record is on the stream
	Time time.Time // when the broker stored it
}

// New returns a runner; Start starts it.
func New(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "skein"
	}
	if cfg.RefreshAfter <= 0 {
		cfg.RefreshAfter = 6 * time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runner{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, defs: map[string]record{}, running: map[string]context.CancelFunc{},
		batches: map[string]map[string]*batchRecord{}}
}

// Close stops the webhook listeners (requests under way finish), then
// every trigger, and waits for them.
func (r *Runner) Close() error {
	r.closeWebhooks()
	r.cancel()
	r.wg.Wait()
	r.hookMu.Lock()
	r.hookPubClosed = true
	if r.hookPub != nil {
		r.hookPub.close()
	}
	r.hookMu.Unlock()
	return nil
}

// Start records the config file's triggers, serves the trigger API, and
// follows the trigger records from the stream's start, running each
// trigger defined there. Call it after the coordinator joined its
// namespace (Recover): a trigger's events are checked against the job
// log it read.
func (r *Runner) Start(ctx context.Context) error {
	for _, d := range r.cfg.Triggers {
		if _, err := r.put(ctx, d, true); err != nil {
			return fmt.Errorf("recording the config file's trigger %s: %w", d.Name, err)
		}
	}
	// The records are read to a mark of this start before any trigger
	// runs: a trigger created then deleted never runs, not even for a
	// moment.
	recs, err := r.cfg.Bus.Subscribe(r.ctx, TriggerSubject("*"), bus.SubscribeOptions{From: 1})
	if err != nil {
		return fmt.Errorf("reading the trigger records: %w", err)
	}
	mark, err := r.cfg.Bus.PublishSeq(ctx, TriggerSubject(markName), bus.Message{})
	if err != nil {
		return fmt.Errorf("marking the end of the trigger records: %w", err)
	}
	for done := false; !done; {
		select {
		case m, ok := <-recs:
			if !ok {
				return errors.New("reading the trigger records: the subscription closed before their end")
			}
			r.apply(m, false)
			r.applied.set(m.Seq)
			done = m.Seq >= mark
		case <-ctx.Done():
			return fmt.Errorf("reading the trigger records: %w", ctx.Err())
		}
	}
	r.mu.Lock()
	for _, rec := range r.defs {
		r.launch(rec)
	}
	r.mu.Unlock()
	if err := r.cfg.Bus.Serve(r.ctx, APISubject, r.serve); err != nil {
		return fmt.Errorf("serving the trigger API: %w", err)
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		for m := range recs {
			r.apply(m, true)
			r.applied.set(m.Seq)
		}
	}()
	go func() { defer r.wg.Done(); r.refresh() }()
	return nil
}

// refresh records again, while the runner runs, every trigger whose
// newest record is older than RefreshAfter: the event stream drops
// records past its retention, and a trigger must outlive that. A copy
// changes nothing for the runners that read it (the same definition),
// and once one coordinator has recorded it the others see it fresh.
func (r *Runner) refresh() {
	t := time.NewTicker(max(r.cfg.RefreshAfter/8, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			r.pruneBatches(now.Add(-batchKeep))
			var stale []Def
			r.mu.Lock()
			for _, rec := range r.defs {
				if !rec.Time.IsZero() && now.Sub(rec.Time) > r.cfg.RefreshAfter {
					stale = append(stale, rec.Def)
				}
			}
			r.mu.Unlock()
			for _, d := range stale {
				if _, err := r.put(r.ctx, d, false); err != nil && r.ctx.Err() == nil {
					r.log.Warn("recording a trigger again", "trigger", d.Name, "err", err)
				}
			}
		}
	}
}

// markName is the record a starting runner reads the records up to; no
// trigger can have its name.
const markName = "~mark"

// apply handles one trigger record; live: start and stop the triggers
// it changes (else Start launches them once the records are read).
func (r *Runner) apply(m bus.Message, live bool) {
	name := strings.TrimPrefix(m.Subject, "trigger.")
	if name == markName {
		return
	}
	if v := r.cfg.Verify; v != nil && !v(m) {
		r.log.Warn("ignoring a trigger record the coordinators did not sign", "subject", m.Subject)
		return
	}
	if strings.HasPrefix(name, batchPrefix) {
		r.applyBatch(m)
		return
	}
	var b recordBody
	if err := json.Unmarshal(m.Data, &b); err != nil {
		r.log.Warn("ignoring a malformed trigger record", "subject", m.Subject, "err", err)
		return
	}
	if b.Def != nil {
		if err := b.Def.Validate(); err != nil || b.Def.Name != name {
			r.log.Warn("ignoring an invalid trigger record", "trigger", name, "err", err)
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.defs[name]; ok && b.Def != nil && rec.Def.equal(*b.Def) {
		// The same definition again (a restart's config file, a
		// refresh): the trigger runs on from its first record.
		rec.Time = m.Time
		r.defs[name] = rec
		return
	}
	if stop := r.running[name]; stop != nil {
		stop()
		delete(r.running, name)
	}
	// A trigger deleted or changed starts from new events: the batches
	// of the one before are not its own (their event ids may recur).
	delete(r.batches, name)
	if b.Def == nil {
		if old, ok := r.defs[name]; ok {
			delete(r.defs, name)
			if live {
				r.log.Info("trigger deleted", "trigger", name)
				r.wg.Add(1)
				go func() { defer r.wg.Done(); r.forget(old.Def) }()
			}
		}
		return
	}
	rec := record{Def: *b.Def, Seq: m.Seq, Time: m.Time}
	r.defs[name] = rec
	if live {
		r.launch(rec)
	}
}

// launch starts a trigger. Called with r.mu held.
func (r *Runner) launch(rec record) {
	ctx, cancel := context.WithCancel(r.ctx)
	r.running[rec.Def.Name] = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.run(ctx, rec) }()
}

func (d Def) equal(o Def) bool {
	a, _ := json.Marshal(d)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// delivery is one event from a source, settled once its job is recorded.
type delivery struct {
	ev  Event
	ack func(ctx context.Context) error
	nak func(ctx context.Context) error
	// working, when set, tells the source the event is still being
	// handled (its redelivery lease is renewed).
	working func() error
	// hold: the source cannot deliver the event again (a jobs source
	// reads on), so the runner waits for its lease rather than hand the
	// event back.
	hold bool
	// redelivered: the source delivered the message before (to this
	// coordinator or another); at: when it was received.
	redelivered bool
	at          time.Time
}

// source delivers a trigger's events until ctx ends or it fails.
type source interface {
	run(ctx context.Context, out chan<- delivery) error
}

// run runs one trigger: its source (opened again after a failure), its
// batches, and their jobs.
func (r *Runner) run(ctx context.Context, rec record) {
	d := rec.Def
	log := r.log.With("trigger", d.Name)
	src, err := r.source(rec)
	if err != nil {
		log.Error("trigger cannot run", "err", err)
		return
	}
	out := make(chan delivery)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(out)
		err := retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 10 * time.Second, OnRetry: func(n int, err error, _ time.Duration) {
			log.Warn("trigger source failed; opening it again", "attempt", n, "err", err)
		}}, func() error {
			err := src.run(ctx, out)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("the source ended")
			}
			return err
		})
		if err != nil && ctx.Err() == nil {
			log.Error("trigger stopped", "err", err)
		}
	}()
	log.Info("trigger started", "source", d.Source.describe())
	count := max(d.Batch.Count, 1)
	var batch []delivery
	var timer <-chan time.Time
	flush := func() {
		if len(batch) > 0 {
			r.fire(ctx, d, batch, nil, log)
		}
		batch, timer = nil, nil
	}
	var readAt time.Time // when the records were last read to a mark
	for {
		select {
		case dl, ok := <-out:
			if !ok {
				flush()
				return
			}
			if dl.redelivered && d.batching() {
				// It may belong to a batch recorded by a coordinator that
				// died (batch.go): read the records to now, then look.
				if !dl.at.Before(readAt) {
					now := time.Now()
					if err := r.readRecords(ctx); err != nil {
						log.Warn("reading the batch records; the event goes back to the source", "event", dl.ev.ID, "err", err)
						r.settle(ctx, []delivery{dl}, false, log)
						continue
					}
					readAt = now
				}
				if rb := r.recordedBatch(d.Name, dl.ev.ID); rb != nil {
					r.fire(ctx, d, []delivery{dl}, rb.events(), log)
					continue
				}
			}
			batch = append(batch, dl)
			if len(batch) >= count {
				flush()
			} else if len(batch) == 1 && d.Batch.Window > 0 {
				timer = time.After(time.Duration(d.Batch.Window))
			}
		case <-timer:
			flush()
		}
	}
}

// settle acks the deliveries, or hands them back to the source.
func (r *Runner) settle(ctx context.Context, batch []delivery, ack bool, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, dl := range batch {
		f := dl.nak
		if ack {
			f = dl.ack
		}
		if err := f(sctx); err != nil {
			log.Warn("settling a trigger event", "event", dl.ev.ID, "ack", ack, "err", err)
		}
	}
}

// fire submits the job of a batch of events and settles them: acked once
// the job is recorded (or was already), handed back to the source when it
// cannot be (the coordinator lost its lease or is closing). recorded,
// when set, is the recorded batch the deliveries belong to (batch.go):
// its job is submitted; else the deliveries' events make the batch,
// recorded before its job is submitted when the trigger batches.
func (r *Runner) fire(ctx context.Context, d Def, batch []delivery, recorded []Event, log *slog.Logger) {
	evs := recorded
	if evs == nil {
		evs = make([]Event, len(batch))
		for i, dl := range batch {
			evs[i] = dl.ev
		}
	}
	settle := func(ack bool) { r.settle(ctx, batch, ack, log) }
	// The events stay with this coordinator while their job is
	// submitted, however long that takes (retries).
	hctx, stopBeats := context.WithCancel(ctx)
	defer stopBeats()
	go func() {
		t := time.NewTicker(workingEvery)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				for _, dl := range batch {
					if dl.working != nil {
						_ = dl.working()
					}
				}
			}
		}
	}()
	spec, err := d.Spec(evs)
	if err != nil {
		log.Warn("an event the trigger cannot make a job of; dropped", "err", err)
		settle(true)
		return
	}
	if spec == nil {
		settle(true)
		return
	}
	tries := submitTries
	if batch[0].hold {
		tries = 0 // until it is recorded: the source cannot take it back
	}
	if recorded == nil && d.batching() && !batch[0].hold {
		err := retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Tries: tries}, func() error {
			return r.recordBatch(ctx, d, evs, spec.ID)
		})
		if err != nil {
			log.Warn("the trigger's batch was not recorded; events handed back", "job", spec.ID, "err", err)
			settle(false)
			return
		}
	}
	id, err := retry.Value(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Tries: tries, OnRetry: func(n int, err error, _ time.Duration) {
		log.Warn("submitting a trigger's job", "job", spec.ID, "attempt", n, "err", err)
	}}, func() (string, error) {
		if !r.cfg.Coordinator.LeaseHeld() {
			err := errors.New("the coordinator does not hold its lease")
			if batch[0].hold {
				return "", err // wait for it: nobody else has these events
			}
			return "", retry.Permanent(err)
		}
		s := *spec
		id, err := r.cfg.Coordinator.SubmitOnce(ctx, &s)
		if err != nil && r.cfg.ErrJobExists != nil && errors.Is(err, r.cfg.ErrJobExists) {
			return id, nil
		}
		if err != nil && r.isInvalid(err) {
			return "", retry.Permanent(err)
		}
		return id, err
	})
	switch {
	case err == nil:
		log.Info("trigger fired", "job", id, "events", len(batch))
		settle(true)
	case r.isInvalid(err):
		log.Warn("the trigger's job is refused; events dropped", "job", spec.ID, "err", err)
		settle(true)
	default:
		log.Warn("the trigger's job was not submitted; events handed back", "job", spec.ID, "err", err)
		settle(false)
	}
}

// sourceLease is how long a NATS source's message stays with a
// coordinator without news (it is then delivered again, to any
// coordinator: the one that had it died); workingEvery is how often a
// coordinator that still works on it says so.
const (
	sourceLease  = 6 * time.Second
	workingEvery = 2 * time.Second
)

// submitTries bounds the submissions of one batch's job (about a minute
// and a half) before its events are handed back to the source.
const submitTries = 20

// isInvalid reports a job the coordinator refuses for good: retrying
// cannot help.
func (r *Runner) isInvalid(err error) bool {
	return err != nil && r.cfg.ErrInvalid != nil && errors.Is(err, r.cfg.ErrInvalid)
}

func (s Source) describe() string {
	switch {
	case s.NATS != "":
		return "nats:" + s.NATS
	case s.AMQP != "":
		return "amqp:" + s.AMQP
	case s.Webhook != "":
		return "webhook:" + s.Webhook
	}
	return "jobs:" + s.Jobs
}

// source opens the source of a trigger.
func (r *Runner) source(rec record) (source, error) {
	d := rec.Def
	switch {
	case d.Source.NATS != "":
		if r.cfg.DialNATS == nil {
			return nil, errors.New("this coordinator cannot reach NATS sources")
		}
		return &natsSource{r: r, def: d, at: rec.Time, subject: d.Source.NATS}, nil
	case d.Source.AMQP != "":
		if r.cfg.DialAMQP == nil {
			return nil, errors.New("this coordinator cannot reach AMQP sources")
		}
		return &amqpSource{r: r, def: d, queue: d.Source.AMQP}, nil
	case d.Source.Webhook != "":
		switch {
		case r.cfg.BusKind == BusNATS && r.cfg.DialNATS != nil:
			return &natsSource{r: r, def: d, at: rec.Time, subject: webhookSubject(r.cfg.Namespace, d.Name), hook: true}, nil
		case r.cfg.BusKind == BusAMQP && r.cfg.DialAMQP != nil:
			return &amqpSource{r: r, def: d, queue: webhookQueue(r.cfg.Namespace, d.Name), hook: true}, nil
		}
		return nil, errors.New("this coordinator cannot record webhook events (Config.BusKind and its dialer)")
	}
	if r.cfg.Result == nil {
		return nil, errors.New("this coordinator cannot read job results")
	}
	return &jobsSource{r: r, def: d, from: rec.Seq}, nil
}

// parse turns a message body into an event; id is the message's own id
// ("" if it has none).
func parse(d Def, id string, body []byte) (Event, error) {
	if d.Source.Format == "s3" {
		return ParseS3(body)
	}
	if id == "" {
		id = bodyID(body)
	}
	return ParseJSON(id, body)
}
