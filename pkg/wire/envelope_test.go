package wire

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestEnvelopeOtherLayouts: an envelope whose keys come in another order
// (another writer's) decodes; one cut short is malformed.
func TestEnvelopeOtherLayouts(t *testing.T) {
	body, err := msgpack.Marshal(Owner{Job: "j", Coordinator: "c-a", Term: 2})
	if err != nil {
		t.Fatal(err)
	}
	data, err := msgpack.Marshal(map[string]any{"b": msgpack.RawMessage(body), "k": "owner", "v": 1})
	if err != nil {
		t.Fatal(err)
	}
	var o Owner
	if err := Decode(data, KindOwner, &o); err != nil || o.Job != "j" || o.Term != 2 {
		t.Fatalf("got %+v, %v", o, err)
	}
	if err := Decode(data[:len(data)-3], KindOwner, &o); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a cut envelope: got %v, want ErrMalformed", err)
	}
	old, _ := msgpack.Marshal(map[string]any{"k": "owner", "v": 0, "b": msgpack.RawMessage(body)})
	if err := Decode(old, KindOwner, &o); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 0: got %v, want ErrVersion", err)
	}
}

// TestMalformedEnvelopeLeaksNothing: a malformed envelope off the bus
// must not leave state behind that later messages pay for. (The msgpack
// library's DecodeRaw, which read an envelope's body, leaves its pooled
// decoder recording every byte it reads afterwards when it fails: each
// later message decoded through it was copied once more, and kept.)
func TestMalformedEnvelopeLeaksNothing(t *testing.T) {
	// Keys out of Encode's order (the general path), the body cut short.
	bad := []byte{0x83, 0xa1, 'k', 0xa5, 'o', 'w', 'n', 'e', 'r', 0xa1, 'v', 1, 0xa1, 'b', 0xdb, 0, 0, 0, 9, 'x'}
	big, err := Encode(KindOwner, Owner{Job: strings.Repeat("j", 1<<20), Coordinator: "c-a", Term: 2})
	if err != nil {
		t.Fatal(err)
	}
	// allocated is what 20 decodes of big allocate, each after poison().
	allocated := func(poison func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 20 {
			poison()
			var o Owner
			if err := Decode(big, KindOwner, &o); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	clean := allocated(func() {})
	poisoned := allocated(func() {
		if _, _, err := split(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("got %v, want ErrMalformed", err)
		}
	})
	if poisoned > clean+clean/2 {
		t.Fatalf("decoding a 1 MB message after a malformed envelope allocates %d MB per 20, against %d MB without", poisoned>>20, clean>>20)
	}
}
