package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// The oldest and newest supported nats-server binaries, and a server
// process of a test's own (internal/testenv).
type natsProcess = testenv.NATSProcess

func natsServers(t *testing.T) map[string]string { return testenv.NATSServerBins(t) }

func startNATSProcess(t *testing.T, bin string) *natsProcess { return testenv.StartNATS(t, bin) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
