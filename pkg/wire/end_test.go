package wire

import (
	"errors"
	"testing"
)

// DecodeEnd accepts only an end record of the job it is asked about,
// with a final state.
func TestDecodeEnd(t *testing.T) {
	enc := func(kind Kind, v any) []byte {
		b, err := Encode(kind, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"the job's end", enc(KindEnd, End{Status: JobStatus{ID: "j1", State: StateDone}}), true},
		{"a failed end", enc(KindEnd, End{Status: JobStatus{ID: "j1", State: StateFailed}}), true},
		{"another job's end", enc(KindEnd, End{Status: JobStatus{ID: "j2", State: StateDone}}), false},
		{"a running state", enc(KindEnd, End{Status: JobStatus{ID: "j1", State: StateRunning}}), false},
		{"no state", enc(KindEnd, End{Status: JobStatus{ID: "j1"}}), false},
		{"another kind", enc(KindPublished, Published{Job: "j1"}), false},
		{"garbage", []byte("garbage"), false},
		{"empty", nil, false},
	} {
		st, err := DecodeEnd(c.data, "j1")
		switch {
		case c.ok && (err != nil || st.ID != "j1"):
			t.Errorf("%s: %+v, %v; want accepted", c.name, st, err)
		case !c.ok && !errors.Is(err, ErrMalformed):
			t.Errorf("%s: %+v, %v; want an error wrapping ErrMalformed", c.name, st, err)
		}
	}
}

func FuzzDecodeEnd(f *testing.F) {
	b, _ := Encode(KindEnd, End{Status: JobStatus{ID: "j1", State: StateDone}})
	f.Add(b)
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeEnd(data, "j1")
		if err == nil && (st.ID != "j1" || !st.State.Terminal()) {
			t.Fatalf("accepted %+v", st)
		}
	})
}
