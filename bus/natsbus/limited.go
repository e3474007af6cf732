package natsbus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/skeinrun/skein/bus"
)

// consumeLimited delivers at most o.Limit messages with pull requests
// that never ask for more than can still be delivered (Fetch of
// min(Prefetch, left)), so that a consumer stopping at its limit leaves
// no message pulled on its behalf: the server would hold such a message
// until its AckWait, with nobody left to take it after. A message that
// arrives once ctx is done is handed back (Nak) at once; stopping takes up
// to one pull request's expiry (250ms).
func (b *Bus) consumeLimited(ctx context.Context, queue string, c jetstream.Consumer, o bus.QueueOptions) <-chan bus.Delivery {
	out := make(chan bus.Delivery)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		left := o.Limit
		for left > 0 && ctx.Err() == nil && !b.isClosed() {
			// Short pull requests: once ctx is done the consumer still
			// reads its batch to the end (to hand messages back), so the
			// expiry bounds how long stopping takes.
			batch, err := c.Fetch(min(left, o.Prefetch), jetstream.FetchMaxWait(250*time.Millisecond))
			if err != nil {
				if ctx.Err() != nil || b.isClosed() {
					return
				}
				b.log.Warn("natsbus: fetch", "queue", queue, "err", err)
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				case <-b.closed:
				}
				continue
			}
			// Read the batch to its end even after ctx is done: what
			// arrives then goes back to the queue.
			for m := range batch.Messages() {
				if ctx.Err() != nil || b.isClosed() {
					_ = m.Nak()
					continue
				}
				d := b.newDelivery(m, queue)
				select {
				case out <- d:
					left--
				case <-ctx.Done():
					_ = m.Nak()
				case <-b.closed:
					_ = m.Nak()
				}
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil && !b.isClosed() {
				b.log.Warn("natsbus: fetch", "queue", queue, "err", err)
			}
		}
	}()
	return out
}
