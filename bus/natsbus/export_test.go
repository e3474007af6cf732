package natsbus

import (
	"context"
	"time"
)

// DeleteTask exposes deleteTask to the external tests.
func (b *Bus) DeleteTask(ctx context.Context, seq uint64) error { return b.deleteTask(ctx, seq) }

// WithPullTimes sets a windowed consumer's pull request times: how long
// the bus waits for a request's end (wait) and the expiry the server is
// given (expires).
func WithPullTimes(o Options, wait, expires time.Duration) Options {
	o.pullWait, o.pullExpires = wait, expires
	return o
}

// RestartSubscriptions makes every event subscription of b open a new
// consumer, as a failed pull (a missed heartbeat) does.
func RestartSubscriptions(b *Bus) {
	b.streams.mu.Lock()
	rs := b.subRestarts()
	b.streams.mu.Unlock()
	for _, r := range rs {
		r()
	}
}
