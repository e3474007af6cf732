package natsbus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
)

// handBackDelay is how long a message handed back by a stopping limited
// consumer waits before the server delivers it again: longer than the
// 250ms expiry of the consumer's own outstanding pull request.
const handBackDelay = 500 * time.Millisecond

// consumeLimited delivers at most o.Limit messages with pull requests
// that never ask for more than can still be delivered (Fetch of
// min(Prefetch, left)), so that a consumer stopping at its limit leaves
// no message pulled on its behalf: the server would hold such a message
// until its AckWait, with nobody left to take it after. A message that
// arrives once ctx is done is handed back (Nak) with a delay longer than
// a pull request's expiry (handBackDelay): with Nak at once the server
// gave it straight back to the same outstanding batch request, which
// handed it back again, and so on until MaxDeliver was spent and nobody
// could ever get it (a barrier reducer enqueued just as a job's
// activations stopped was lost so). Stopping takes up to one pull
// request's expiry (250ms).
//
// A failing fetch is retried as pump retries a pull: with backoff, the
// queue's consumer opened again (it may have been deleted), logged once
// per streak.
func (b *Bus) consumeLimited(ctx context.Context, queue string, c jetstream.Consumer, o bus.QueueOptions) <-chan bus.Delivery {
	out := make(chan bus.Delivery)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-pctx.Done():
			case <-b.closed:
				cancel()
			}
		}()
		left := o.Limit
		failures := 0
		p := pullRetry
		p.OnRetry = func(_ int, err error, wait time.Duration) {
			failures++
			if failures == 1 {
				b.log.Warn("natsbus: fetch failing; retrying with backoff", "queue", queue, "err", err, "wait", wait)
			}
		}
		fetch := func() error {
			if c == nil {
				rctx, rcancel := context.WithTimeout(pctx, reopenTimeout)
				b.forgetConsumer(queue)
				nc, err := b.consumer(rctx, queue, o)
				rcancel()
				if err != nil {
					return err
				}
				c = nc
			}
			// Short pull requests: once ctx is done the consumer still
			// reads its batch to the end (to hand messages back), so the
			// expiry bounds how long stopping takes.
			batch, err := c.Fetch(min(left, o.Prefetch), jetstream.FetchMaxWait(250*time.Millisecond))
			if err != nil {
				if pctx.Err() != nil {
					return retry.Permanent(pctx.Err())
				}
				c = nil
				return err
			}
			// Read the batch to its end even after ctx is done: what
			// arrives then goes back to the queue.
			got := 0
			for m := range batch.Messages() {
				got++
				if pctx.Err() != nil {
					_ = m.NakWithDelay(handBackDelay)
					continue
				}
				select {
				case out <- b.newDelivery(m, queue):
					left--
				case <-pctx.Done():
					_ = m.NakWithDelay(handBackDelay)
				}
			}
			if pctx.Err() != nil {
				return retry.Permanent(pctx.Err())
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && got == 0 {
				c = nil
				return err
			}
			return nil
		}
		for left > 0 {
			if err := retry.Do(pctx, p, fetch); err != nil {
				if pctx.Err() == nil {
					b.log.Error("natsbus: fetch ended", "queue", queue, "err", err)
				}
				return
			}
			if failures > 0 {
				b.log.Info("natsbus: fetch recovered", "queue", queue, "failures", failures)
				failures = 0
			}
		}
	}()
	return out
}
