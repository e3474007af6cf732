package wire

import (
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRoundTrip(t *testing.T) {
	in := Task{Job: "j1", Index: 7, Attempt: 2, Kind: TaskMap, Function: "add",
		Args: []Value{Value(`1`)}, Kwargs: map[string]Value{"y": Value(`{"a":[1,2]}`)}}
	data, err := Encode(KindTask, &in)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := Peek(data); err != nil || k != KindTask {
		t.Fatalf("peek: %q %v", k, err)
	}
	var out Task
	if err := Decode(data, KindTask, &out); err != nil {
		t.Fatal(err)
	}
	if out.Job != "j1" || out.Index != 7 || string(out.Args[0]) != "1" || string(out.Kwargs["y"]) != `{"a":[1,2]}` {
		t.Fatalf("round trip changed the task: %+v", out)
	}
	if err := Decode(data, KindEvent, &out); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decoding a task as an event: %v", err)
	}
}

func TestGenericEnvelope(t *testing.T) {
	// A map with the fields in another order (another encoder) still reads.
	body, _ := msgpack.Marshal(Cancel{Job: "j2"})
	data, _ := msgpack.Marshal(map[string]any{"k": "cancel", "b": msgpack.RawMessage(body), "v": Version})
	var c Cancel
	if err := Decode(data, KindCancel, &c); err != nil || c.Job != "j2" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestRejects(t *testing.T) {
	good, _ := Encode(KindCancel, Cancel{Job: "x"})
	bad := append([]byte(nil), good...)
	bad[3] = 9 // version
	cases := map[string]struct {
		data []byte
		want error
	}{
		"not msgpack":   {[]byte("hello, world"), ErrMalformed},
		"empty":         {nil, ErrMalformed},
		"wrong version": {bad, ErrVersion},
		"truncated":     {good[:len(good)-2], ErrMalformed},
	}
	for name, tc := range cases {
		var c Cancel
		if err := Decode(tc.data, KindCancel, &c); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

// FuzzDecode: no input makes a decoder panic, and what decodes re-encodes.
func FuzzDecode(f *testing.F) {
	for _, v := range []any{Task{Job: "j", Function: "add"}, Event{Job: "j", Type: EventDone, Result: Value("1")}} {
		kind := KindTask
		if _, ok := v.(Event); ok {
			kind = KindEvent
		}
		b, _ := Encode(kind, v)
		f.Add(b)
	}
	for kind, v := range map[Kind]any{KindOwner: Owner{Job: "j", Coordinator: "c-a", Term: 2}, KindAlive: Alive{Coordinator: "c-a", Node: "c-a", Seq: 7}} {
		b, _ := Encode(kind, v)
		f.Add(b)
	}
	f.Add([]byte{0x83, 0xa1, 'v', 1})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var task Task
		if Decode(data, KindTask, &task) == nil {
			if _, err := Encode(KindTask, &task); err != nil {
				t.Fatalf("re-encoding a decoded task: %v", err)
			}
		}
		var evs Events
		_ = Decode(data, KindEvents, &evs)
		var ev Event
		_ = Decode(data, KindEvent, &ev)
		var spec JobSpec
		_ = Decode(data, KindJob, &spec)
		var req Request
		_ = Decode(data, KindReq, &req)
		var own Owner
		_ = Decode(data, KindOwner, &own)
		var alive Alive
		_ = Decode(data, KindAlive, &alive)
	})
}
