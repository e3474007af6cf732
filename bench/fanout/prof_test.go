package fanout

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/wire"
)

func TestProfileFanout(t *testing.T) {
	ctx := context.Background()
	c, err := embedded.Start(ctx, embedded.Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	it := make([]any, 10000)
	b, _ := json.Marshal(it)
	start := time.Now()
	_, st, err := c.Client.Run(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "noop", Iterdata: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10k in %v, p50 %dus p99 %dus", time.Since(start), st.LatencyP50us, st.LatencyP99us)
}
