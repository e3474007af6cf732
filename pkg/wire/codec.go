package wire

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/vmihailenco/msgpack/v5"
)

// Task and Event are the messages of every task, so they are encoded and
// decoded by hand, straight from and into byte slices, rather than by
// reflection: the same map, the same keys in the same order, the same
// number encodings and the same omitted empty fields as the struct tags
// give (TestCodecMatchesReflection checks it byte for byte), at a fraction
// of the cost. Unknown keys are skipped, as reflection skips them. Rare,
// nested fields (kwargs, obj, env, err, arr, trace) go through the library,
// with map keys sorted.
//
// Encode and Decode take the hand-written path directly for a Task, an
// Events batch and an Event; the msgpack.CustomEncoder methods below make
// the library write the same bytes when a Task or an Event is part of
// another value. There are no CustomDecoder methods: one would have to
// take its bytes with the library's DecodeRaw, which leaves its pooled
// decoder recording every later byte when it fails on malformed input
// (TestMalformedEnvelopeLeaksNothing); the library decodes a nested Task
// or Event by reflection, to the same value.

// fields counts the keys of t's map.
func (t *Task) fields() int {
	n := 6 // job, i, a, kind, fn, queued
	for _, set := range [...]bool{len(t.Args) > 0, len(t.Kwargs) > 0, t.InputRef != "", t.Obj != nil,
		t.Feed != "", t.Expect != 0, t.FeedFrom != 0, t.Ordered, t.IndexBase != 0, t.Deadline != 0,
		t.TimeoutMS != 0, t.MemoryMB != 0, len(t.Env) > 0, t.Modules != "", t.Monitor != "", len(t.Trace) > 0} {
		if set {
			n++
		}
	}
	return n
}

// appendTask appends t's map to b.
func appendTask(b []byte, t *Task) ([]byte, error) {
	w := appender{b: b}
	w.mapLen(t.fields())
	w.str("job", t.Job)
	w.int("i", int64(t.Index))
	w.int("a", int64(t.Attempt))
	w.str("kind", string(t.Kind))
	w.str("fn", t.Function)
	if len(t.Args) > 0 {
		w.key("args")
		w.values(t.Args)
	}
	if len(t.Kwargs) > 0 {
		w.any("kwargs", t.Kwargs)
	}
	if t.InputRef != "" {
		w.str("input_ref", t.InputRef)
	}
	if t.Obj != nil {
		w.any("obj", t.Obj)
	}
	if t.Feed != "" {
		w.str("feed", t.Feed)
	}
	if t.Expect != 0 {
		w.int("expect", int64(t.Expect))
	}
	if t.FeedFrom != 0 {
		w.key("feed_from")
		w.uint64(t.FeedFrom)
	}
	if t.Ordered {
		w.key("ordered")
		w.b = append(w.b, 0xc3)
	}
	if t.IndexBase != 0 {
		w.int("index_base", int64(t.IndexBase))
	}
	if t.Deadline != 0 {
		w.int64("deadline", t.Deadline)
	}
	if t.TimeoutMS != 0 {
		w.int64("timeout_ms", t.TimeoutMS)
	}
	if t.MemoryMB != 0 {
		w.int("mem", int64(t.MemoryMB))
	}
	if len(t.Env) > 0 {
		w.any("env", t.Env)
	}
	if t.Modules != "" {
		w.str("modules", t.Modules)
	}
	w.int64("queued", t.Queued)
	if t.Monitor != "" {
		w.str("monitor", t.Monitor)
	}
	if len(t.Trace) > 0 {
		w.any("trace", t.Trace)
	}
	return w.b, w.err
}

// decodeTask reads one task map from r into t.
func decodeTask(r *reader, t *Task) error {
	*t = Task{}
	return r.fields("task", func(key []byte) (err error) {
		switch string(key) {
		case "job":
			var s []byte
			if s, err = r.strBytes(); err == nil {
				t.Job = lastTaskJob.get(s)
			}
		case "i":
			t.Index, err = r.intField()
		case "a":
			t.Attempt, err = r.intField()
		case "kind":
			var s []byte
			s, err = r.strBytes()
			t.Kind = taskKind(s)
		case "fn":
			var s []byte
			if s, err = r.strBytes(); err == nil {
				t.Function = lastTaskFunction.get(s)
			}
		case "args":
			t.Args, err = r.values()
		case "kwargs":
			err = r.lib(&t.Kwargs)
		case "input_ref":
			t.InputRef, err = r.str()
		case "obj":
			err = r.lib(&t.Obj)
		case "feed":
			t.Feed, err = r.str()
		case "expect":
			t.Expect, err = r.intField()
		case "feed_from":
			t.FeedFrom, err = r.uint()
		case "ordered":
			t.Ordered, err = r.bool()
		case "index_base":
			t.IndexBase, err = r.intField()
		case "deadline":
			t.Deadline, err = r.int()
		case "timeout_ms":
			t.TimeoutMS, err = r.int()
		case "mem":
			t.MemoryMB, err = r.intField()
		case "env":
			err = r.lib(&t.Env)
		case "modules":
			t.Modules, err = r.str()
		case "queued":
			t.Queued, err = r.int()
		case "monitor":
			t.Monitor, err = r.str()
		case "trace":
			err = r.lib(&t.Trace)
		default:
			err = r.skip()
		}
		return err
	})
}

// taskKind returns the constant for a known kind without allocating.
func taskKind(s []byte) TaskKind {
	switch string(s) {
	case string(TaskMap):
		return TaskMap
	case string(TaskReduce):
		return TaskReduce
	case string(TaskCall):
		return TaskCall
	}
	return TaskKind(s)
}

// eventType returns the constant for a known type without allocating.
func eventType(s []byte) EventType {
	switch string(s) {
	case string(EventDone):
		return EventDone
	case string(EventStarted):
		return EventStarted
	case string(EventFailed):
		return EventFailed
	}
	return EventType(s)
}

func (ev *Event) fields() int {
	n := 6 // job, i, kind, a, t, w
	for _, set := range [...]bool{ev.Delivery != 0, ev.Queued != 0, ev.Started != 0, ev.Finished != 0,
		ev.PeakKB != 0, len(ev.Result) > 0, ev.ResultRef != "", ev.Error != nil, ev.Log != "",
		len(ev.Arrivals) > 0, len(ev.Trace) > 0} {
		if set {
			n++
		}
	}
	return n
}

// appendEvent appends ev's map to b.
func appendEvent(b []byte, ev *Event) ([]byte, error) {
	w := appender{b: b}
	w.mapLen(ev.fields())
	w.str("job", ev.Job)
	w.int("i", int64(ev.Task))
	w.str("kind", string(ev.Kind))
	w.int("a", int64(ev.Attempt))
	if ev.Delivery != 0 {
		w.int("d", int64(ev.Delivery))
	}
	w.str("t", string(ev.Type))
	w.str("w", ev.Worker)
	if ev.Queued != 0 {
		w.int64("q", ev.Queued)
	}
	if ev.Started != 0 {
		w.int64("s", ev.Started)
	}
	if ev.Finished != 0 {
		w.int64("f", ev.Finished)
	}
	if ev.PeakKB != 0 {
		w.int64("mem", ev.PeakKB)
	}
	if len(ev.Result) > 0 {
		w.key("r")
		w.bin(ev.Result)
	}
	if ev.ResultRef != "" {
		w.str("rref", ev.ResultRef)
	}
	if ev.Error != nil {
		w.any("err", ev.Error)
	}
	if ev.Log != "" {
		w.str("log", ev.Log)
	}
	if len(ev.Arrivals) > 0 {
		w.any("arr", ev.Arrivals)
	}
	if len(ev.Trace) > 0 {
		w.any("trace", ev.Trace)
	}
	return w.b, w.err
}

// appendEvents appends a batch's map ({"evs": [event, …]}) to b.
func appendEvents(b []byte, evs []Event) ([]byte, error) {
	w := appender{b: append(b, 0x81, 0xa3, 'e', 'v', 's')}
	if evs == nil {
		w.b = append(w.b, 0xc0)
		return w.b, nil
	}
	w.arrayLen(len(evs))
	var err error
	for i := range evs {
		if w.b, err = appendEvent(w.b, &evs[i]); err != nil {
			return nil, err
		}
	}
	return w.b, nil
}

// decodeEvent reads one event map from r into ev. last holds the strings
// of the batch's previous event: the job and the worker are the same in
// most batches, so they are allocated once.
func decodeEvent(r *reader, ev *Event, last *Event) error {
	*ev = Event{}
	return r.fields("event", func(key []byte) (err error) {
		var s []byte
		switch string(key) {
		case "job":
			if s, err = r.strBytes(); err == nil {
				ev.Job = reuse(s, last.Job)
			}
		case "i":
			ev.Task, err = r.intField()
		case "kind":
			s, err = r.strBytes()
			ev.Kind = taskKind(s)
		case "a":
			ev.Attempt, err = r.intField()
		case "d":
			ev.Delivery, err = r.intField()
		case "t":
			s, err = r.strBytes()
			ev.Type = eventType(s)
		case "w":
			if s, err = r.strBytes(); err == nil {
				ev.Worker = reuse(s, last.Worker)
			}
		case "q":
			ev.Queued, err = r.int()
		case "s":
			ev.Started, err = r.int()
		case "f":
			ev.Finished, err = r.int()
		case "mem":
			ev.PeakKB, err = r.int()
		case "r":
			ev.Result, err = r.bytes()
		case "rref":
			ev.ResultRef, err = r.str()
		case "err":
			err = r.lib(&ev.Error)
		case "log":
			ev.Log, err = r.str()
		case "arr":
			err = r.lib(&ev.Arrivals)
		case "trace":
			err = r.lib(&ev.Trace)
		default:
			err = r.skip()
		}
		return err
	})
}

// lastTaskJob and lastTaskFunction are the job id and function of the
// task decoded last: a runtime decodes a flood of one job's tasks, and
// taking these strings anew for each was a tenth of its allocations.
var lastTaskJob, lastTaskFunction lastString

// lastString is a string read last, shared by goroutines.
type lastString struct{ p atomic.Pointer[string] }

// get returns the last string when it holds the bytes of b, else a new
// one, which becomes the last.
func (l *lastString) get(b []byte) string {
	if p := l.p.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	l.p.Store(&s)
	return s
}

// reuse returns prev when it holds the bytes of s, else a new string.
func reuse(s []byte, prev string) string {
	if string(s) == prev {
		return prev
	}
	return string(s)
}

// decodeEvents reads a batch's map into b.
func decodeEvents(r *reader, b *Events) error {
	*b = Events{}
	return r.fields("events", func(key []byte) error {
		if string(key) != "evs" {
			return r.skip()
		}
		l, err := r.arrayLen()
		if err != nil {
			return err
		}
		if l < 0 {
			b.Events = nil
			return nil
		}
		// Each event takes at least a few bytes: a count larger than
		// what is left is malformed, not a reason to allocate.
		if l > len(r.b)-r.off {
			return fmt.Errorf("%d events in %d bytes: %w", l, len(r.b)-r.off, errShort)
		}
		b.Events = make([]Event, l)
		var last Event
		for i := range b.Events {
			if err := decodeEvent(r, &b.Events[i], &last); err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			last = b.Events[i]
		}
		return nil
	})
}

// EncodeMsgpack implements msgpack.CustomEncoder.
// A value receiver: a Task is encoded whether or not it is addressable.
func (t Task) EncodeMsgpack(e *msgpack.Encoder) error {
	b, err := appendTask(nil, &t)
	if err != nil {
		return err
	}
	return e.Encode(msgpack.RawMessage(b))
}

// EncodeMsgpack implements msgpack.CustomEncoder.
// A value receiver, as Task's.
func (ev Event) EncodeMsgpack(e *msgpack.Encoder) error {
	b, err := appendEvent(nil, &ev)
	if err != nil {
		return err
	}
	return e.Encode(msgpack.RawMessage(b))
}

// libEncode encodes a nested value with the library, map keys sorted.
func libEncode(b []byte, v any) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}
