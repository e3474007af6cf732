package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

func TestEmbeddedJobs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cases := []struct {
		name string
		spec wire.JobSpec
		want string
	}{
		{"call", wire.JobSpec{Kind: wire.JobCall, Function: "add", Data: wire.Value(`{"x":1,"y":3}`)}, `4`},
		{"map", wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`)}, `[2,3,4]`},
		{"mapreduce", wire.JobSpec{Kind: wire.JobMapReduce, Function: "add", Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`), ReduceFunction: "product"}, `24`},
		{"mapreduce-barrier", wire.JobSpec{Kind: wire.JobMapReduce, Function: "add", Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`), ReduceFunction: "sum", ReduceMode: wire.ReduceBarrier}, `9`},
		{"empty-map", wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[]`)}, `[]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			res, st, err := c.Client.Run(ctx, &spec)
			if err != nil {
				t.Fatalf("run: %v (status %+v)", err, st)
			}
			if string(res) != tc.want {
				t.Fatalf("got %s, want %s", res, tc.want)
			}
		})
	}
}
