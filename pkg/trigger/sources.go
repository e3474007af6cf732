package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/pkg/wire"
)

// natsSource reads a subject under <ns>.notify. through the namespace's
// notification stream (<NS>_NOTIFY, created by the first NATS trigger),
// which keeps what is published there while no coordinator reads it, and
// a durable consumer per trigger that every coordinator pulls from.
type natsSource struct {
	r       *Runner
	def     Def
	at      time.Time // the trigger's record: its consumer starts there
	subject string    // Source.NATS, or the trigger's webhook subject
	// hook: the messages are webhook records, whose event ids come from
	// their bodies (webhookSubject).
	hook bool
}

// NotifyStream is the stream of a namespace's NATS trigger sources, and
// NotifySubjects the subjects it keeps: a NATS source's subject must lie
// under them (what a notifier's rights allow, deploy/nats).
func NotifyStream(ns string) string   { return strings.ToUpper(ns) + "_NOTIFY" }
func NotifySubjects(ns string) string { return ns + ".notify.>" }

// notifySubject checks that subject lies under the namespace's notify
// subjects: a trigger may not read the namespace's own traffic (API
// requests, tasks) or another namespace's.
func notifySubject(ns, subject string) error {
	rest, ok := strings.CutPrefix(subject, ns+".notify.")
	if !ok || rest == "" || strings.ContainsAny(subject, " \t") {
		return fmt.Errorf("%w: source nats %q: a NATS source's subject is under %s.notify. (for example %s.notify.s3)", ErrInvalid, subject, ns, ns)
	}
	return nil
}

// notifyStream returns the namespace's notification stream, made if
// missing.
func notifyStream(ctx context.Context, js jetstream.JetStream, ns string) (jetstream.Stream, error) {
	name := NotifyStream(ns)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{NotifySubjects(ns)}, Retention: jetstream.LimitsPolicy,
		MaxAge: 7 * 24 * time.Hour, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		st, err = js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("the notification stream %s: %w", name, err)
	}
	return st, nil
}

func (s *natsSource) run(ctx context.Context, out chan<- delivery) error {
	subject := s.subject
	if err := notifySubject(s.r.cfg.Namespace, subject); err != nil {
		return retry.Permanent(err)
	}
	nc, err := s.r.cfg.DialNATS(ctx, s.def.Source.URL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := notifyStream(ctx, js, s.r.cfg.Namespace)
	if err != nil {
		return err
	}
	name := NotifyStream(s.r.cfg.Namespace)
	cons, err := s.consumer(ctx, st)
	if err != nil {
		return fmt.Errorf("the consumer of subject %s: %w", subject, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(max(2*s.def.Batch.Count, 4)))
	if err != nil {
		return err
	}
	s.r.log.Info("trigger source open", "trigger", s.def.Name, "stream", name)
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		md, mdErr := m.Metadata()
		id := m.Headers().Get("Nats-Msg-Id")
		if s.hook {
			id = ""
		} else if id == "" && mdErr == nil {
			id = "seq-" + strconv.FormatUint(md.Sequence.Stream, 10)
		}
		ev, err := parse(s.def, id, m.Data())
		if err != nil {
			s.r.log.Warn("dropping a message the trigger cannot read", "trigger", s.def.Name, "err", err)
			_ = m.Term()
			continue
		}
		dl := delivery{ev: ev,
			ack:     func(ctx context.Context) error { return m.DoubleAck(ctx) },
			nak:     func(context.Context) error { return m.NakWithDelay(time.Second) },
			working: m.InProgress,
			// Without metadata, taken for delivered again: the batch
			// records are only read once more.
			redelivered: mdErr != nil || md.NumDelivered > 1, at: time.Now()}
		select {
		case out <- dl:
		case <-ctx.Done():
			return nil
		}
	}
}

// consumer returns the trigger's durable consumer, made if missing. A new
// consumer starts at the trigger's record, by the broker's clock that
// stamped both (when the record came from this broker): what was
// published after the trigger was created is run even when no
// coordinator read it then. An existing one is used as it is, never
// updated: its position is the trigger's progress.
func (s *natsSource) consumer(ctx context.Context, st jetstream.Stream) (jetstream.Consumer, error) {
	durable := consumerName(s.def.Name)
	cons, err := st.Consumer(ctx, durable)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return cons, err
	}
	cfg := jetstream.ConsumerConfig{
		Durable: durable, FilterSubject: s.subject, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: sourceLease, DeliverPolicy: jetstream.DeliverNewPolicy, MaxAckPending: 1000,
	}
	if at := s.at; !at.IsZero() && s.def.Source.URL == "" {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &at
	}
	cons, err = st.CreateConsumer(ctx, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return st.Consumer(ctx, durable) // another coordinator made it meanwhile
	}
	return cons, err
}

func consumerName(trigger string) string { return "trigger-" + trigger }

// forget deletes a deleted NATS trigger's consumer, so that a trigger
// made again under its name starts afresh.
func (r *Runner) forget(d Def) {
	if d.Source.Webhook != "" && r.cfg.BusKind == BusAMQP {
		r.forgetQueue(d)
		return
	}
	if (d.Source.NATS == "" && d.Source.Webhook == "") || r.cfg.DialNATS == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	nc, err := r.cfg.DialNATS(ctx, d.Source.URL)
	if err != nil {
		r.log.Warn("deleting a deleted trigger's consumer", "trigger", d.Name, "err", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		err = js.DeleteConsumer(ctx, NotifyStream(r.cfg.Namespace), consumerName(d.Name))
	}
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		r.log.Warn("deleting a deleted trigger's consumer", "trigger", d.Name, "err", err)
	}
}

// amqpSource consumes a durable RabbitMQ queue with manual acks.
type amqpSource struct {
	r     *Runner
	def   Def
	queue string // Source.AMQP, or the trigger's webhook queue
	// hook: the messages are webhook records, whose event ids come from
	// their bodies (webhookQueue).
	hook bool
}

// declareQueue declares durable queue q on a channel of conn and returns
// the channel to go on with: when q exists with other arguments (a
// quorum queue), or the coordinator may not declare it, it is used as it
// is on a new channel (the failed declaration closed the first).
func declareQueue(conn *amqp.Connection, q string) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		if ch, err = conn.Channel(); err != nil {
			return nil, err
		}
		if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
	}
	return ch, nil
}

func (s *amqpSource) run(ctx context.Context, out chan<- delivery) error {
	conn, err := s.r.cfg.DialAMQP(ctx, s.def.Source.URL)
	if err != nil {
		return err
	}
	defer conn.Close()
	q := s.queue
	ch, err := declareQueue(conn, q)
	if err != nil {
		return err
	}
	if ex := s.def.Source.Exchange; ex != "" {
		if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
			// It exists as another kind, or the coordinator may not
			// declare it: bind to it as it is.
			if ch, err = conn.Channel(); err != nil {
				return err
			}
		}
		key := s.def.Source.RoutingKey
		if key == "" {
			key = "#"
		}
		if err := ch.QueueBind(q, key, ex, false, nil); err != nil {
			return fmt.Errorf("binding queue %s to exchange %s: %w", q, ex, err)
		}
	}
	if err := ch.Qos(max(2*s.def.Batch.Count, 16), 0, false); err != nil {
		return err
	}
	ds, err := ch.ConsumeWithContext(ctx, q, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming queue %s: %w", q, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	s.r.log.Info("trigger source open", "trigger", s.def.Name, "queue", q)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			if e == nil {
				return errors.New("the connection closed")
			}
			return e
		case d, ok := <-ds:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("the queue's consumer was cancelled")
			}
			id := d.MessageId
			if s.hook {
				id = ""
			}
			ev, err := parse(s.def, id, d.Body)
			if err != nil {
				s.r.log.Warn("dropping a message the trigger cannot read", "trigger", s.def.Name, "err", err)
				_ = d.Reject(false)
				continue
			}
			dl := delivery{ev: ev,
				ack:         func(context.Context) error { return d.Ack(false) },
				nak:         func(context.Context) error { return d.Nack(false, true) },
				redelivered: d.Redelivered, at: time.Now()}
			select {
			case out <- dl:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// jobsSource reads the ends of other jobs: the end records on the job log
// (job.<id>.end, which the run.skein.job.done job events mirror; a
// coordinator killed between the two leaves only the record), from the
// trigger's record on. Every coordinator reads them all, in stream order,
// so that batches by count are the same events for everyone and after a
// restart; SubmitOnce starts one job per batch.
type jobsSource struct {
	r    *Runner
	def  Def
	from uint64
	seen map[string]uint64 // event id -> position: copies are dropped
}

func (s *jobsSource) run(ctx context.Context, out chan<- delivery) error {
	if s.seen == nil {
		s.seen = map[string]uint64{}
	}
	ch, err := s.r.cfg.Bus.Subscribe(ctx, wire.JobEndSubject("*"), bus.SubscribeOptions{From: s.from})
	if err != nil {
		return err
	}
	s.r.log.Info("trigger source open", "trigger", s.def.Name, "from", s.from)
	prefix, own := "", jobPrefix(s.def.Name)
	if t, ok := strings.CutPrefix(s.def.Source.Jobs, "trigger:"); ok {
		prefix = jobPrefix(t)
	}
	noop := func(context.Context) error { return nil }
	for m := range ch {
		job := strings.TrimSuffix(strings.TrimPrefix(m.Subject, "job."), ".end")
		if !strings.HasPrefix(job, prefix) || strings.HasPrefix(job, own) {
			continue
		}
		if v := s.r.cfg.Verify; v != nil && !v(m) {
			s.r.log.Warn("ignoring a job end record the coordinators did not sign", "trigger", s.def.Name, "job", job)
			continue
		}
		st, err := wire.DecodeEnd(m.Data, job)
		if err != nil || st.State != wire.StateDone {
			continue
		}
		id := job + ".done"
		if at, ok := s.seen[id]; ok && at != m.Seq {
			continue // a copy of an end already read
		}
		s.seen[id] = m.Seq
		var res json.RawMessage
		err = retryResult(ctx, func() error {
			var err error
			res, err = s.r.cfg.Result(ctx, job)
			return err
		})
		if err != nil {
			return err
		}
		ev := Event{ID: id}
		var list []json.RawMessage
		if st.Kind == wire.JobMap && json.Unmarshal(res, &list) == nil {
			ev.Inputs = list
		} else {
			ev.Inputs = []json.RawMessage{res}
		}
		s.from = m.Seq + 1
		select {
		case out <- delivery{ev: ev, ack: noop, nak: noop, hold: true}:
		case <-ctx.Done():
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("the job end records subscription closed")
}

// retryResult calls f until it succeeds or ctx ends: a job's result can
// be briefly unavailable (its owner is being taken over).
func retryResult(ctx context.Context, f func() error) error {
	return retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}, f)
}
