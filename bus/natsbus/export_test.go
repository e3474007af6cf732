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
