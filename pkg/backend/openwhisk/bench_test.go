package openwhisk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/skeinrun/skein/pkg/backend"
	"github.com/skeinrun/skein/pkg/backend/openwhisk/owtest"
)

// BenchmarkDispatch measures the backend's invocation rate against the
// fake controller on loopback at several invoke_pool_threads; each
// invocation is one non-blocking POST (Batch 1). The activations run the
// test action (echo) in up to 8 warm subprocesses meanwhile.
func BenchmarkDispatch(b *testing.B) {
	for _, threads := range []int{1, 10, 100, 500} {
		b.Run(fmt.Sprintf("pool_threads=%d", threads), func(b *testing.B) {
			ctl, err := owtest.Start(owtest.Config{APIKey: "u:k", Command: []string{testAction(b)}, MaxContainers: 8})
			if err != nil {
				b.Fatal(err)
			}
			defer ctl.Close()
			cfg := DefaultConfig()
			cfg.APIHost, cfg.Image = ctl.URL(), "skein/runtime:bench"
			cfg.Credentials = StaticCredentials(Credentials{APIKey: "u:k"})
			cfg.Batch, cfg.PoolThreads = 1, threads
			cfg.Params = map[string]any{"echo": "bench"}
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			ctx := context.Background()
			bk, err := New(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer bk.Close()
			if err := bk.Deploy(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := bk.Dispatch(ctx, backend.Job{ID: "bench", Pool: "p", Tasks: b.N}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "invocations/s")
			_ = ctl.Wait(ctx)
		})
	}
}
