package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// EventView is one task event on a job page. Times are milliseconds since
// the coordinator accepted the job (runtime clocks for the task's own
// times: across machines they include the clocks' offset).
type EventView struct {
	Task     int             `json:"i"`
	Kind     wire.TaskKind   `json:"k"`
	Attempt  int             `json:"a"`
	Type     wire.EventType  `json:"t"`
	Worker   string          `json:"w,omitempty"`
	Queued   float64         `json:"q,omitempty"`
	Started  float64         `json:"s,omitempty"`
	Finished float64         `json:"f,omitempty"`
	PeakKB   int64           `json:"mem,omitempty"`
	Error    *wire.TaskError `json:"err,omitempty"`
	// Log is the attempt's captured output, sent for failed attempts.
	Log      string    `json:"log,omitempty"`
	Arrivals []float64 `json:"arr,omitempty"`
}

func rel(ns, base int64) float64 {
	if ns <= 0 {
		return 0
	}
	return float64(ns-base) / 1e6
}

func eventView(ev *wire.Event, base int64) EventView {
	v := EventView{Task: ev.Task, Kind: ev.Kind, Attempt: ev.Attempt, Type: ev.Type, Worker: ev.Worker,
		Queued: rel(ev.Queued, base), Started: rel(ev.Started, base), Finished: rel(ev.Finished, base), PeakKB: ev.PeakKB, Error: ev.Error}
	if ev.Type == wire.EventFailed {
		v.Log = ev.Log
	}
	if len(ev.Arrivals) > 0 {
		v.Arrivals = make([]float64, len(ev.Arrivals))
		for i, a := range ev.Arrivals {
			v.Arrivals[i] = rel(a, base)
		}
	}
	return v
}

// maxBatch bounds the events of one message of the stream.
const maxBatch = 5000

// sse writes server-sent events.
type sse struct {
	w  http.ResponseWriter
	fl http.Flusher
}

func (s sse) send(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	s.fl.Flush()
	return nil
}

// events streams a job's task events ("events": a list of EventView) and
// its status ("status": a JobView, every flush interval) until the job
// ends: then the events up to its end record, and "end".
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	info, ok := d.find(id)
	if !ok {
		http.Error(w, "this coordinator holds no job "+id, http.StatusNotFound)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	out := sse{w, fl}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	base, from := info.Status.Submitted, info.Status.From
	live, err := d.cfg.Events.Subscribe(ctx, wire.TaskEvents(id), bus.SubscribeOptions{From: from})
	if err != nil {
		http.Error(w, "reading the job's events: "+err.Error(), http.StatusBadGateway)
		return
	}
	w.WriteHeader(http.StatusOK)
	status := func() JobView {
		if st, err := d.cfg.Coordinator.Status(id); err == nil {
			info.Status = st
		}
		return view(info, time.Now())
	}
	if out.send("status", status()) != nil {
		return
	}
	var batch []EventView
	var last uint64
	add := func(m bus.Message) {
		last = max(last, m.Seq)
		evs, err := coordinator.DecodeEvents(m.Data)
		if err != nil {
			return
		}
		for i := range evs {
			if evs[i].Job == id {
				batch = append(batch, eventView(&evs[i], base))
			}
		}
	}
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		err := out.send("events", batch)
		batch = batch[:0]
		return err == nil
	}
	tick := time.NewTicker(d.cfg.Flush)
	defer tick.Stop()
	for {
		select {
		case m, ok := <-live:
			if !ok {
				return // the request or the bus ended
			}
			add(m)
			if len(batch) >= maxBatch && !flush() {
				return
			}
			continue
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		if !flush() {
			return
		}
		v := status()
		if out.send("status", v) != nil {
			return
		}
		if v.State.Terminal() {
			break
		}
	}
	// The job ended: read its events up to its end record, so that the
	// page has every one of them, then close.
	end, err := d.endPosition(ctx, id, from)
	if err == nil && end > last {
		var rest <-chan bus.Message
		rest, err = d.cfg.Events.Subscribe(ctx, wire.TaskEvents(id), bus.SubscribeOptions{From: last + 1, To: end})
		for err == nil {
			m, ok := <-rest
			if !ok {
				break
			}
			add(m)
			if len(batch) >= maxBatch && !flush() {
				return
			}
		}
	}
	if !flush() {
		return
	}
	note := ""
	if err != nil {
		note = "the job's last events may be missing: " + err.Error()
	}
	_ = out.send("end", map[string]any{"status": status(), "note": note})
}

// endPosition returns the stream position of the job's end record,
// waiting for it (the status turns final just before it is recorded).
func (d *Dashboard) endPosition(ctx context.Context, id string, from uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ch, err := d.cfg.Events.Subscribe(ctx, wire.JobEndSubject(id), bus.SubscribeOptions{From: from})
	if err != nil {
		return 0, err
	}
	for m := range ch {
		if _, err := wire.DecodeEnd(m.Data, id); err == nil {
			return m.Seq, nil
		}
	}
	return 0, fmt.Errorf("no end record of job %s: %w", id, context.Cause(ctx))
}
