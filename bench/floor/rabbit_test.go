package floor

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// A small run that checks the floor loop works; not a measurement.
func TestRabbitFloor(t *testing.T) {
	url := testenv.Require(t, testenv.AMQPURL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := RabbitFloor(ctx, url, 500)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 500 || r.Wall <= 0 || r.LatP50 <= 0 || r.LatP99 < r.LatP50 || r.MsgsPerTask <= 0 {
		t.Fatalf("implausible result %+v", r)
	}
	t.Logf("%d tasks in %s: %.0f tasks/s, latency p50 %s p99 %s, %.2f messages per task", r.N, r.Wall, r.TasksPerSec(), r.LatP50, r.LatP99, r.MsgsPerTask)
}
