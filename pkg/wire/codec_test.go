package wire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// taskPlain and eventPlain have Task's and Event's fields and tags but
// not their methods: the library encodes them by reflection.
type (
	taskPlain  Task
	eventPlain Event
)

// randTask fills a Task with random values, each field empty one time in
// three, so that every omitempty path is taken.
func randTask(r *rand.Rand) Task {
	some := func() bool { return r.IntN(3) > 0 }
	var t Task
	t.Job = "job-" + string(rune('a'+r.IntN(26)))
	t.Index = randInt(r)
	t.Attempt = r.IntN(5)
	t.Kind = TaskMap
	t.Function = "noop"
	if some() {
		t.Args = []Value{Value(`[1,2]`), Value(`{"a":"b"}`)}
	}
	if some() {
		t.Kwargs = map[string]Value{"x": Value(`3`)}
	}
	if some() {
		t.InputRef = "ref"
	}
	if some() {
		t.Obj = &Object{URL: "s3://b/k", Store: "s3", Bucket: "b", Key: "k", Part: 1, Parts: 2, Start: 10, End: 20, Size: 30}
	}
	if some() {
		t.Feed, t.Expect, t.FeedFrom, t.Ordered, t.IndexBase = "feed", randInt(r), uint64(r.Int64()), true, randInt(r)
	}
	if some() {
		t.Deadline, t.TimeoutMS, t.MemoryMB = r.Int64(), -r.Int64N(1000), randInt(r)
	}
	if some() {
		t.Env = map[string]string{"A": "1", "B": "2"}
		t.Modules = "mods"
	}
	t.Queued = r.Int64()
	if some() {
		t.Monitor = "poll"
		t.Trace = map[string]string{"traceparent": "00-abc"}
	}
	return t
}

func randInt(r *rand.Rand) int {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return r.IntN(100)
	case 2:
		return -r.IntN(math.MaxInt32)
	default:
		return r.IntN(math.MaxInt32) << 8
	}
}

func randEvent(r *rand.Rand) Event {
	some := func() bool { return r.IntN(3) > 0 }
	ev := Event{Job: "j", Task: randInt(r), Kind: TaskReduce, Attempt: r.IntN(4), Type: EventDone, Worker: "w1"}
	if some() {
		ev.Delivery = r.IntN(9)
	}
	if some() {
		ev.Queued, ev.Started, ev.Finished, ev.PeakKB = r.Int64(), r.Int64(), r.Int64(), r.Int64N(1<<20)
	}
	if some() {
		ev.Result = Value(`{"n":12345678901234567890}`)
	}
	if some() {
		ev.ResultRef = "s3://r"
	}
	if some() {
		ev.Error = &TaskError{Kind: ErrUser, Type: "ValueError", Message: "bad", Stack: "tb", Retryable: true}
		ev.Log = "out\n"
	}
	if some() {
		ev.Arrivals = []int64{1, -2, 3 << 40}
		ev.Trace = map[string]string{"k": "v"}
	}
	return ev
}

// marshalSorted encodes v with map keys sorted (both codecs write maps
// in Go's random order otherwise).
func marshalSorted(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

// TestCodecMatchesReflection: the hand-written codecs write exactly the
// bytes that reflection writes and read back what reflection wrote.
func TestCodecMatchesReflection(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		task := randTask(r)
		want, err := marshalSorted((*taskPlain)(&task))
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalSorted(task) // a value: not addressable
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("task %d: hand-written encoding differs\n got %x\nwant %x\ntask %+v", i, got, want, task)
		}
		var back Task
		if err := decodeTask(&reader{b: want}, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, task) {
			t.Fatalf("task %d: decoded %+v\nwant %+v", i, back, task)
		}

		ev := randEvent(r)
		want, err = marshalSorted((*eventPlain)(&ev))
		if err != nil {
			t.Fatal(err)
		}
		got, err = marshalSorted(Events{Events: []Event{ev}})
		if err != nil {
			t.Fatal(err)
		}
		// Events is a one-key map around an array of one event.
		prefix := []byte{0x81, 0xa3, 'e', 'v', 's', 0x91}
		if !bytes.Equal(got, append(prefix, want...)) {
			t.Fatalf("event %d: hand-written encoding differs\n got %x\nwant %x", i, got, append(prefix, want...))
		}
		var evBack Event
		if err := decodeEvent(&reader{b: want}, &evBack, &Event{}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(evBack, ev) {
			t.Fatalf("event %d: decoded %+v\nwant %+v", i, evBack, ev)
		}
	}
}

// TestCodecSkipsUnknownKeys: a newer peer's extra keys are skipped, as
// reflection skips them.
func TestCodecSkipsUnknownKeys(t *testing.T) {
	data, err := msgpack.Marshal(map[string]any{"job": "j", "new": map[string]any{"x": []int{1, 2}}, "i": 7, "queued": int64(5)})
	if err != nil {
		t.Fatal(err)
	}
	var task Task
	if err := decodeTask(&reader{b: data}, &task); err != nil {
		t.Fatal(err)
	}
	if task.Job != "j" || task.Index != 7 || task.Queued != 5 {
		t.Fatalf("got %+v", task)
	}
	if err := decodeTask(&reader{b: []byte{0x81, 0xa3, 'j', 'o', 'b', 0x05}}, &task); err == nil {
		t.Fatal("a number for the job's name was accepted")
	}
}

func BenchmarkTaskCodec(b *testing.B) {
	task := Task{Job: "0123456789abcdef", Index: 12345, Attempt: 1, Kind: TaskMap, Function: "noop", Args: []Value{Value(`12345`)}, Queued: 1764500000000000000}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := Encode(KindTask, &task); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-reflection", func(b *testing.B) {
		for b.Loop() {
			if _, err := Encode(KindTask, (*taskPlain)(&task)); err != nil {
				b.Fatal(err)
			}
		}
	})
	data, _ := Encode(KindTask, &task)
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var t Task
			if err := Decode(data, KindTask, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-reflection", func(b *testing.B) {
		for b.Loop() {
			var t taskPlain
			if err := Decode(data, KindTask, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBatchRoundTrip: a batch of events of several jobs and workers comes
// back as it went (the decoder shares a string between consecutive events
// only when it is the same).
func TestBatchRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		evs := make([]Event, r.IntN(40))
		for i := range evs {
			evs[i] = randEvent(r)
			evs[i].Job = []string{"j1", "j1", "j2", ""}[r.IntN(4)]
			evs[i].Worker = []string{"w1", "w2"}[r.IntN(2)]
			evs[i].Type = []EventType{EventDone, EventFailed, EventStarted, "future"}[r.IntN(4)]
			evs[i].Kind = []TaskKind{TaskMap, TaskCall, TaskReduce, "other"}[r.IntN(4)]
		}
		data, err := Encode(KindEvents, Events{Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		var back Events
		if err := Decode(data, KindEvents, &back); err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			evs = []Event{}
		}
		if !reflect.DeepEqual(back.Events, evs) {
			t.Fatalf("batch decoded as\n%+v\nwant\n%+v", back.Events, evs)
		}
	}
}

// TestDecodeAcceptsWhatReflectionAccepts: other writers may encode the
// same fields with other widths and codes (an index as int64, a string as
// a byte string, nil for empty); the hand-written decoder reads them as
// reflection does.
func TestDecodeAcceptsWhatReflectionAccepts(t *testing.T) {
	cases := []map[string]any{
		{"job": []byte("j"), "i": int64(7), "a": uint8(1), "kind": "map", "fn": "noop", "queued": int32(-5)},
		{"job": nil, "i": nil, "a": int8(-3), "kind": nil, "fn": "f", "args": nil, "ordered": nil, "queued": uint64(math.MaxUint64)},
		{"job": "j", "i": uint16(65000), "args": []any{[]byte("1"), "2", nil}, "feed_from": int8(-1), "deadline": uint32(1 << 31), "ordered": true},
		{"job": "j", "i": 1, "kwargs": map[string]any{"x": []byte("1")}, "env": map[string]string{"A": "b"}, "obj": map[string]any{"url": "s3://b/k"}},
		{"job": "j", "new": time.Unix(1, 2), "newer": map[string]any{"a": []any{1.5, float32(2), "s", []byte("b"), nil, true, int64(-1 << 40)}}, "i": 3},
		{"job": "j", "new": msgpack.RawMessage{0xc7, 3, 1, 'a', 'b', 'c'}, "i": 3},
		{"job": "j", "new": msgpack.RawMessage{0xd8, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, "i": 4},
		{"job": "j", "new": msgpack.RawMessage{0xdb, 0xff, 0xff, 0xff, 0xff}, "i": 4},
		{"job": "j", "new": msgpack.RawMessage{0xdf, 0xff, 0xff, 0xff, 0xff}, "i": 4},
		{"job": "j", "i": 1.5},
		{"job": 5},
		{"args": "not an array"},
		{"ordered": 1},
	}
	for i, c := range cases {
		data, err := msgpack.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var fast Task
		fastErr := decodeTask(&reader{b: data}, &fast)
		var slow taskPlain
		slowErr := msgpack.Unmarshal(data, &slow)
		if (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("case %d: hand-written %v, reflection %v", i, fastErr, slowErr)
		}
		if fastErr == nil && !reflect.DeepEqual(fast, Task(slow)) {
			t.Fatalf("case %d: hand-written %+v\nreflection %+v", i, fast, Task(slow))
		}
	}
}

// FuzzCodecMatchesReflection: on any input the hand-written decoders of a
// task and an event succeed exactly when reflection does, with the same
// value.
func FuzzCodecMatchesReflection(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		task := randTask(r)
		b, _ := msgpack.Marshal((*taskPlain)(&task))
		f.Add(b)
		ev := randEvent(r)
		b, _ = msgpack.Marshal((*eventPlain)(&ev))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && (data[0]&0xf0 == 0x90 || data[0] == 0xdc || data[0] == 0xdd) {
			// Reflection also reads a struct from an array of its
			// fields in order; no Skein writer writes that form, and
			// the hand-written decoders refuse it.
			return
		}
		var fast Task
		fastErr := decodeTask(&reader{b: data}, &fast)
		var fastEv Event
		fastEvErr := decodeEvent(&reader{b: data}, &fastEv, &Event{})
		if err := (&reader{b: data}).skip(); err != nil {
			// Not one whole value: both decoders refuse it. (The
			// library's reflection is not run on it: it allocates
			// what lengths declare, up to a megabyte at a time,
			// and the fuzzer's workers run out of memory.)
			if fastErr == nil || fastEvErr == nil {
				t.Fatalf("decoded a task (%v) or an event (%v) from a broken value (%v)", fastErr, fastEvErr, err)
			}
			return
		}
		var slow taskPlain
		slowErr := msgpack.Unmarshal(data, &slow)
		if (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("task: hand-written %v, reflection %v", fastErr, slowErr)
		}
		if fastErr == nil && !reflect.DeepEqual(fast, Task(slow)) {
			t.Fatalf("task: hand-written %+v\nreflection %+v", fast, Task(slow))
		}
		var slowEv eventPlain
		slowErr = msgpack.Unmarshal(data, &slowEv)
		if fastErr = fastEvErr; (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("event: hand-written %v, reflection %v", fastErr, slowErr)
		}
		if fastErr == nil && !reflect.DeepEqual(fastEv, Event(slowEv)) {
			t.Fatalf("event: hand-written %+v\nreflection %+v", fastEv, Event(slowEv))
		}
	})
}
