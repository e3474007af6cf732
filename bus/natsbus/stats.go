package natsbus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// QueueDepth returns how many messages queue holds: waiting, and taken
// by a runtime but not yet acked (a work-queue stream keeps a message
// until its ack). For metrics (pkg/metrics); one stream info request.
func (b *Bus) QueueDepth(ctx context.Context, queue string) (int, error) {
	if !validToken(queue) {
		return 0, fmt.Errorf("natsbus: queue name %q: must be one subject token", queue)
	}
	s, err := b.js.Stream(ctx, b.tasksStream)
	if err != nil {
		return 0, fmt.Errorf("natsbus: queue depth of %s: %w", queue, err)
	}
	filter := b.opts.Prefix + ".task." + queue + ".>"
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("natsbus: queue depth of %s: %w", queue, err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// Connected reports whether the connection to the server is up.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Reconnects counts the connection's reconnections since Connect.
func (b *Bus) Reconnects() uint64 { return b.nc.Stats().Reconnects }
