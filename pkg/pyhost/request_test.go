package pyhost

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// encodeRequest writes the JSON of a request by hand: it must decode to
// what json.Marshal of the same fields gives, for any strings.
func TestEncodeRequest(t *testing.T) {
	deadline := time.Unix(1700000000, 123)
	for _, c := range []*fn.Call{
		{Ref: "mod:f", Args: []wire.Value{wire.Value(`1`), wire.Value(` {"a": [1, 2]} `)}},
		{Ref: `@f "quoted" \ back.pkl`, ModulesDir: "/tmp/dir\twith\ttabs/é/\u2028", Kwargs: map[string]wire.Value{"x": wire.Value(`"s"`), "ü\n": wire.Value(`null`)}},
		{Ref: "m.f", Env: map[string]string{"K": "v\"\x01"}, Obj: &fn.Object{Object: wire.Object{Bucket: "b", Key: "k<&>", Part: 2, Parts: 3, Start: 5, End: 10}}},
		{Ref: "m:f\xff"},
	} {
		for _, withDeadline := range []bool{false, true} {
			ctx := context.Background()
			if withDeadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, deadline)
				defer cancel()
			}
			b, err := encodeRequest(ctx, 42, c)
			if err != nil {
				t.Fatalf("%q: %v", c.Ref, err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%q: %s is not JSON: %v", c.Ref, b, err)
			}
			want := map[string]any{"id": 42, "ref": c.Ref, "path": c.ModulesDir, "args": c.Args, "kwargs": c.Kwargs}
			if c.Args == nil {
				want["args"] = []any{}
			}
			if c.Kwargs == nil {
				want["kwargs"] = map[string]any{}
			}
			if c.Obj != nil {
				want["obj"] = c.Obj.Object
			}
			if c.Env != nil {
				want["env"] = c.Env
			}
			if withDeadline {
				want["deadline"] = deadline.UnixNano()
			}
			wb, _ := json.Marshal(want)
			var wantMap map[string]any
			_ = json.Unmarshal(wb, &wantMap)
			if !reflect.DeepEqual(got, wantMap) {
				t.Errorf("%q:\n got %s\nwant %s", c.Ref, b, wb)
			}
		}
	}
	if _, err := encodeRequest(context.Background(), 1, &fn.Call{Ref: "m:f", Args: []wire.Value{wire.Value(`{bad`)}}); err == nil {
		t.Error("an argument that is not JSON was encoded")
	}
}
