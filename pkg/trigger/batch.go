package trigger

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
)

// Batches of a NATS, AMQP or webhook source (Batch.Count above 1, or a
// Window) are cut from the messages in the order one coordinator got
// them. A coordinator killed after it recorded a batch's job and before
// it acknowledged the batch's messages has them delivered again, maybe
// to another coordinator, maybe among other messages: cut anew, they
// would make other batches, whose jobs have other ids, and run twice.
// So before it submits a batch's job, the runner records the batch (its
// events, with their inputs) on the event stream, subject
// trigger.~batch-<trigger>; every runner reads those records with the
// trigger records. A message delivered again is first looked up there
// (after reading the records to a mark published once it arrived: the
// record, made before the first delivery's job, is then read): one that
// belongs to a recorded batch submits that batch's job as recorded
// (coordinator.SubmitOnce: started if it was not, found if it was) and is
// acknowledged, and never joins another batch.

// batchPrefix starts the record names of batches; no trigger can have
// such a name.
const batchPrefix = "~batch-"

// batchKeep is how long a runner remembers a recorded batch: the event
// stream's default retention, past which a runner that starts does not
// find it either.
const batchKeep = 24 * time.Hour

// batchRecord is a recorded batch of trigger Trigger.
type batchRecord struct {
	Trigger string         `json:"trigger"`
	Events  []batchedEvent `json:"events"`
	at      time.Time      // when the broker stored it
}

type batchedEvent struct {
	ID     string            `json:"id"`
	Inputs []json.RawMessage `json:"inputs"`
}

func (b *batchRecord) events() []Event {
	out := make([]Event, len(b.Events))
	for i, e := range b.Events {
		out[i] = Event{ID: e.ID, Inputs: e.Inputs}
	}
	return out
}

// batching reports whether d's events are grouped as they come, so that
// its batches are recorded before their jobs are submitted.
func (d *Def) batching() bool { return d.Batch.Count > 1 || d.Batch.Window > 0 }

// recordBatch records the batch of events before its job is submitted.
// A batch too large for one message is not recorded (logged): a
// redelivery after a crash may group it anew.
func (r *Runner) recordBatch(ctx context.Context, d Def, evs []Event, jobID string) error {
	rec := batchRecord{Trigger: d.Name, Events: make([]batchedEvent, len(evs))}
	for i, e := range evs {
		rec.Events[i] = batchedEvent{ID: e.ID, Inputs: e.Inputs}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	limit := 1 << 20
	if l, ok := r.cfg.Bus.(bus.Limits); ok {
		limit = l.MaxMessageSize()
	}
	if len(b) > limit*3/4 {
		r.log.Warn("a batch too large to record: delivered again after a crash, its events may be grouped anew", "trigger", d.Name, "job", jobID, "bytes", len(b))
		return nil
	}
	m := bus.Message{Data: b, ID: "batch-" + jobID}
	r.sign(&m)
	if _, err := r.cfg.Bus.PublishSeq(ctx, TriggerSubject(batchPrefix+d.Name), m); err != nil {
		return fmt.Errorf("recording the batch: %w", err)
	}
	return nil
}

// applyBatch remembers a batch record (Runner.apply).
func (r *Runner) applyBatch(m bus.Message) {
	var rec batchRecord
	if err := json.Unmarshal(m.Data, &rec); err != nil || rec.Trigger == "" || rec.Trigger != strings.TrimPrefix(m.Subject, "trigger."+batchPrefix) {
		r.log.Warn("ignoring a malformed batch record", "subject", m.Subject, "err", err)
		return
	}
	rec.at = m.Time
	r.mu.Lock()
	defer r.mu.Unlock()
	byEvent := r.batches[rec.Trigger]
	if byEvent == nil {
		byEvent = map[string]*batchRecord{}
		r.batches[rec.Trigger] = byEvent
	}
	for _, e := range rec.Events {
		byEvent[e.ID] = &rec
	}
}

// recordedBatch returns the recorded batch event id of trigger belongs
// to, or nil.
func (r *Runner) recordedBatch(trigger, id string) *batchRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batches[trigger][id]
}

// pruneBatches forgets the batches recorded before cutoff.
func (r *Runner) pruneBatches(cutoff time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, byEvent := range r.batches {
		for id, rec := range byEvent {
			if !rec.at.IsZero() && rec.at.Before(cutoff) {
				delete(byEvent, id)
			}
		}
		if len(byEvent) == 0 {
			delete(r.batches, t)
		}
	}
}

// seqWatch is the position up to which the trigger records are applied.
type seqWatch struct {
	mu  sync.Mutex
	seq uint64
	ch  chan struct{}
}

func (w *seqWatch) set(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	if seq > w.seq {
		w.seq = seq
		close(w.ch)
		w.ch = make(chan struct{})
	}
}

func (w *seqWatch) wait(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		if w.ch == nil {
			w.ch = make(chan struct{})
		}
		if w.seq >= seq {
			w.mu.Unlock()
			return nil
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readRecords publishes a mark on the trigger records and returns once
// the runner has applied every record up to it.
func (r *Runner) readRecords(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	mark, err := r.cfg.Bus.PublishSeq(ctx, TriggerSubject(markName), bus.Message{})
	if err != nil {
		return fmt.Errorf("marking the trigger records: %w", err)
	}
	return r.applied.wait(ctx, mark)
}
