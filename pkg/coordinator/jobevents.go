package coordinator

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Job events for other programs: the owner of a job publishes its
// lifecycle (submitted, progress at most once a second, a task failed for
// good, and its end) as CloudEvents in JSON on wire.JobEventsSubject, on
// the event stream, where read-only consumers follow them
// (docs/pipelines.md). They are a view: nothing in Skein reads them, and
// one lost to a broker failure is logged, not retried.

// jobEventInterval bounds how often a job's progress event is published.
const jobEventInterval = time.Second

// jobEvent publishes one event of type typ for the job with status st.
// The id is the job, the type and n: the same event published twice (a
// takeover replays the job) has the same id, and the bus drops the copy
// within its deduplication window.
func (j *job) jobEvent(ctx context.Context, typ string, st wire.JobStatus, n int64, fill func(*wire.JobEventData)) {
	if j.replayEnd != nil {
		return // a replay publishes nothing
	}
	d := wire.JobEventData{Job: st}
	if fill != nil {
		fill(&d)
	}
	data, err := json.Marshal(d)
	if err != nil {
		return
	}
	id := j.id + "." + typ[len("run.skein.job."):]
	if n > 0 {
		id += "." + strconv.FormatInt(n, 10)
	}
	ce := wire.CloudEvent{
		SpecVersion: "1.0", ID: id, Source: "/skein/coordinator/" + j.c.own.id, Type: typ, Subject: j.id,
		Time: time.Now().UTC().Format(time.RFC3339Nano), DataContentType: "application/json", DataSchema: wire.JobEventSchema, Data: data,
	}
	body, err := json.Marshal(ce)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m := bus.Message{ID: "ce-" + id, Data: body, Header: map[string]string{"Content-Type": "application/cloudevents+json"}}
	if err := j.c.bus.Publish(pctx, wire.JobEventsSubject(j.id), m); err != nil {
		j.c.log.Warn("publishing a job event", "job", j.id, "type", typ, "err", err)
	}
}

// progressEvents paces a job's progress events.
type progressEvents struct {
	last atomic.Int64   // unix ns of the last one
	n    atomic.Int64   // how many were published
	busy atomic.Bool    // one is being published
	wg   sync.WaitGroup // the one being published
}

// progressEvent publishes a progress event for st, off the job's event
// loop (a broker's confirmation must not hold up the job), unless one
// went out less than jobEventInterval ago or is still on its way.
func (j *job) progressEvent(ctx context.Context, st wire.JobStatus) {
	now := time.Now().UnixNano()
	if now-j.jev.last.Load() < int64(jobEventInterval) || !j.jev.busy.CompareAndSwap(false, true) {
		return
	}
	// Not once the job has ended (finish waits for the one on its way
	// before the end's event; j.mu orders this Add before that Wait).
	j.mu.Lock()
	if j.status.State.Terminal() {
		j.mu.Unlock()
		j.jev.busy.Store(false)
		return
	}
	j.jev.wg.Add(1)
	j.mu.Unlock()
	j.jev.last.Store(now)
	n := j.jev.n.Add(1)
	j.c.wg.Add(1)
	go func() {
		defer j.c.wg.Done()
		defer j.jev.wg.Done()
		defer j.jev.busy.Store(false)
		j.jobEvent(ctx, wire.JobEventProgress, st, n, nil)
	}()
}

// resultRef is the storage reference of a job's single result (call, and
// mapreduce with one reducer) when it was stored by reference, else "".
func (j *job) resultRef() string {
	j.mu.Lock()
	var v wire.Value
	switch {
	case j.spec.Kind == wire.JobCall:
		v, _ = j.results.get(0)
	case j.spec.Kind == wire.JobMapReduce && !j.spec.ReducerOnePerObject && len(j.rResults) > 0:
		v = j.rResults[0]
	}
	j.mu.Unlock()
	var r struct {
		Ref string `json:"$skein_ref"`
	}
	if len(v) == 0 || v[0] != '{' || json.Unmarshal(v, &r) != nil {
		return ""
	}
	return r.Ref
}
