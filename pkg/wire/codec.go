package wire

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Task and Event are the messages of every task, so they are encoded and
// decoded by hand rather than by reflection: the same map, the same keys
// in the same order, the same number encodings and the same omitted empty
// fields as the struct tags give (TestCodecMatchesReflection checks it
// byte for byte), at a fraction of the cost. Unknown keys are skipped,
// as reflection skips them. Rare, nested fields go through the library.

// taskFields counts the keys of t's map.
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

// EncodeMsgpack implements msgpack.CustomEncoder.
// A value receiver: a Task is encoded whether or not it is addressable.
func (t Task) EncodeMsgpack(e *msgpack.Encoder) error {
	w := fieldWriter{e: e}
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
		w.err(e.EncodeUint64(t.FeedFrom))
	}
	if t.Ordered {
		w.key("ordered")
		w.err(e.EncodeBool(true))
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
	return w.error
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (t *Task) DecodeMsgpack(d *msgpack.Decoder) error {
	*t = Task{}
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	var buf [32]byte
	for range max(n, 0) {
		key, err := nextKey(d, &buf)
		if err != nil {
			return fmt.Errorf("task key: %w", err)
		}
		switch string(key) {
		case "job":
			t.Job, err = d.DecodeString()
		case "i":
			t.Index, err = d.DecodeInt()
		case "a":
			t.Attempt, err = d.DecodeInt()
		case "kind":
			var s string
			s, err = d.DecodeString()
			t.Kind = TaskKind(s)
		case "fn":
			t.Function, err = d.DecodeString()
		case "args":
			t.Args, err = decodeValues(d)
		case "kwargs":
			err = d.Decode(&t.Kwargs)
		case "input_ref":
			t.InputRef, err = d.DecodeString()
		case "obj":
			err = d.Decode(&t.Obj)
		case "feed":
			t.Feed, err = d.DecodeString()
		case "expect":
			t.Expect, err = d.DecodeInt()
		case "feed_from":
			t.FeedFrom, err = d.DecodeUint64()
		case "ordered":
			t.Ordered, err = d.DecodeBool()
		case "index_base":
			t.IndexBase, err = d.DecodeInt()
		case "deadline":
			t.Deadline, err = d.DecodeInt64()
		case "timeout_ms":
			t.TimeoutMS, err = d.DecodeInt64()
		case "mem":
			t.MemoryMB, err = d.DecodeInt()
		case "env":
			err = d.Decode(&t.Env)
		case "modules":
			t.Modules, err = d.DecodeString()
		case "queued":
			t.Queued, err = d.DecodeInt64()
		case "monitor":
			t.Monitor, err = d.DecodeString()
		case "trace":
			err = d.Decode(&t.Trace)
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("task field %q: %w", key, err)
		}
	}
	return nil
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

// EncodeMsgpack implements msgpack.CustomEncoder.
// A value receiver, as Task's.
func (ev Event) EncodeMsgpack(e *msgpack.Encoder) error {
	w := fieldWriter{e: e}
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
		w.err(e.EncodeBytes(ev.Result))
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
	return w.error
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (ev *Event) DecodeMsgpack(d *msgpack.Decoder) error {
	*ev = Event{}
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	var buf [32]byte
	for range max(n, 0) {
		key, err := nextKey(d, &buf)
		if err != nil {
			return fmt.Errorf("event key: %w", err)
		}
		var s string
		switch string(key) {
		case "job":
			ev.Job, err = d.DecodeString()
		case "i":
			ev.Task, err = d.DecodeInt()
		case "kind":
			s, err = d.DecodeString()
			ev.Kind = TaskKind(s)
		case "a":
			ev.Attempt, err = d.DecodeInt()
		case "d":
			ev.Delivery, err = d.DecodeInt()
		case "t":
			s, err = d.DecodeString()
			ev.Type = EventType(s)
		case "w":
			ev.Worker, err = d.DecodeString()
		case "q":
			ev.Queued, err = d.DecodeInt64()
		case "s":
			ev.Started, err = d.DecodeInt64()
		case "f":
			ev.Finished, err = d.DecodeInt64()
		case "mem":
			ev.PeakKB, err = d.DecodeInt64()
		case "r":
			ev.Result, err = d.DecodeBytes()
		case "rref":
			ev.ResultRef, err = d.DecodeString()
		case "err":
			err = d.Decode(&ev.Error)
		case "log":
			ev.Log, err = d.DecodeString()
		case "arr":
			err = d.Decode(&ev.Arrivals)
		case "trace":
			err = d.Decode(&ev.Trace)
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("event field %q: %w", key, err)
		}
	}
	return nil
}

// fieldWriter writes map entries and keeps the first error.
type fieldWriter struct {
	e     *msgpack.Encoder
	error error
}

func (w *fieldWriter) err(err error) {
	if w.error == nil {
		w.error = err
	}
}

func (w *fieldWriter) mapLen(n int) { w.err(w.e.EncodeMapLen(n)) }
func (w *fieldWriter) key(k string) { w.err(w.e.EncodeString(k)) }

func (w *fieldWriter) str(k, v string) {
	w.key(k)
	w.err(w.e.EncodeString(v))
}

// int writes an int field as reflection does (the shortest encoding).
func (w *fieldWriter) int(k string, v int64) {
	w.key(k)
	w.err(w.e.EncodeInt(v))
}

// int64 writes an int64 field as reflection does (always 9 bytes).
func (w *fieldWriter) int64(k string, v int64) {
	w.key(k)
	w.err(w.e.EncodeInt64(v))
}

func (w *fieldWriter) any(k string, v any) {
	w.key(k)
	w.err(w.e.Encode(v))
}

func (w *fieldWriter) values(vs []Value) {
	w.err(w.e.EncodeArrayLen(len(vs)))
	for _, v := range vs {
		w.err(w.e.EncodeBytes(v))
	}
}

// nextKey reads a map key. Short keys (all of ours) are read into buf
// without allocating; the result is valid until the next call.
func nextKey(d *msgpack.Decoder, buf *[32]byte) ([]byte, error) {
	code, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	if msgpcode.IsFixedString(code) {
		k := buf[:1+int(code&0x1f)]
		if err := d.ReadFull(k); err != nil {
			return nil, err
		}
		return k[1:], nil
	}
	key, err := d.DecodeString()
	return []byte(key), err
}

func decodeValues(d *msgpack.Decoder) ([]Value, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	vs := make([]Value, n)
	for i := range vs {
		if vs[i], err = d.DecodeBytes(); err != nil {
			return nil, err
		}
	}
	return vs, nil
}
