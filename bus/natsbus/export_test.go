package natsbus

import "context"

// DeleteTask exposes deleteTask to the external tests.
func (b *Bus) DeleteTask(ctx context.Context, seq uint64) error { return b.deleteTask(ctx, seq) }
