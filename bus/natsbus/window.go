package natsbus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
)

// windowExpiry is how long one pull request waits on an empty queue.
// A stopping consumer does not wait for its requests to expire: it
// abandons them, as stopping a jetstream iterator does, and hands back
// what they had already brought. A message the server sends to an
// abandoned request in the meantime comes back after its lease.
const windowExpiry = time.Second

// credit counts what a windowed consumer holds: messages asked for and
// not yet arrived, plus deliveries handed out and not yet settled.
type credit struct {
	mu   sync.Mutex
	held int
	err  error         // the last failed pull, for the pulling loop
	wake chan struct{} // a receive after a change
}

func (c *credit) add(n int, err error) {
	c.mu.Lock()
	c.held += n
	if err != nil {
		c.err = err
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// heldNow is what the window holds.
func (c *credit) heldNow() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

func (c *credit) state() (held int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held, err = c.held, c.err
	c.err = nil
	return held, err
}

// consumeWindow delivers the queue's messages while never holding more
// unsettled ones than the window: it asks the server (pull requests of
// Fetch) only for what the window has room for, and a delivery frees its
// room when it is settled. Messages it pulled are handed over at once,
// so a reader that takes them at once and renews their leases keeps them
// all; nothing waits unrenewed in a client buffer. Requests are sent
// once a quarter of the window is free (or nothing is asked for), so
// that a flood of short tasks costs a pull request per quarter window.
//
// A failing pull is retried as pump retries one: with backoff (pullRetry),
// the queue's consumer opened again (it may have been deleted), logged
// once per streak. A request that fails later (its batch ends in an
// error without a message) turns the next requests synchronous: each
// waits for its first message or its end, under the same backoff, until
// one succeeds.
func (b *Bus) consumeWindow(ctx context.Context, queue string, c jetstream.Consumer, o bus.QueueOptions, win *bus.Window) <-chan bus.Delivery {
	out := make(chan bus.Delivery)
	cr := &credit{wake: make(chan struct{}, 1)}
	pctx, cancel := context.WithCancel(ctx)
	var batches sync.WaitGroup
	// forward hands one pull request's messages over; what the request
	// did not bring frees its room when it ends.
	// first hears nil at the batch's first message, or its error at its
	// end.
	forward := func(batch jetstream.MessageBatch, n int, stop context.CancelFunc, first chan<- error) {
		defer batches.Done()
		defer stop()
		got := 0
		for m := range batch.Messages() {
			if got++; got == 1 {
				first <- nil
			}
			d := b.newDelivery(m, queue)
			d.release = func() { cr.add(-1, nil) }
			if pctx.Err() == nil {
				select {
				case out <- d:
					continue
				case <-pctx.Done():
				}
			}
			// Stopping: hand it back at once rather than at its lease.
			_ = d.Nak(context.Background(), 0)
		}
		var err error
		if berr := batch.Error(); berr != nil && !errors.Is(berr, nats.ErrTimeout) && !errors.Is(berr, context.DeadlineExceeded) && got == 0 && pctx.Err() == nil {
			err = berr
		}
		cr.add(got-n, err)
		if got == 0 {
			first <- err
		}
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		defer batches.Wait()
		defer cancel()
		go func() {
			select {
			case <-pctx.Done():
			case <-b.closed:
				cancel()
			}
		}()
		failures := 0
		p := pullRetry
		p.OnRetry = func(_ int, err error, wait time.Duration) {
			failures++
			if failures == 3 {
				b.log.Warn("natsbus: pull failing; retrying with backoff", "queue", queue, "err", err, "wait", wait)
			}
		}
		// pull asks for n messages; sync, it waits for the request's
		// first message or its end, and returns the request's error.
		pull := func(n int, sync bool) error {
			if c == nil {
				rctx, rcancel := context.WithTimeout(pctx, reopenTimeout)
				b.forgetConsumer(queue)
				nc, err := b.consumer(rctx, queue, o)
				rcancel()
				if err != nil {
					if pctx.Err() != nil {
						return retry.Permanent(pctx.Err())
					}
					return err
				}
				c = nc
			}
			fctx, stop := context.WithTimeout(pctx, windowExpiry)
			batch, err := c.Fetch(n, jetstream.FetchContext(fctx))
			if err != nil {
				stop()
				if pctx.Err() != nil {
					return retry.Permanent(pctx.Err())
				}
				c = nil
				return err
			}
			cr.add(n, nil)
			batches.Add(1)
			first := make(chan error, 1)
			go forward(batch, n, stop, first)
			if !sync {
				return nil
			}
			select {
			case err = <-first:
			case <-pctx.Done():
				return retry.Permanent(pctx.Err())
			}
			if err != nil {
				c = nil
			}
			return err
		}
		failing := false
		for pctx.Err() == nil {
			size, changed := win.Size()
			held, err := cr.state()
			if err != nil {
				// A request failed without a message: open the consumer
				// again and ask synchronously until a request succeeds.
				c, failing = nil, true
				failures++
			}
			if free := size - held; free > 0 && (failing || 4*free >= size || held == 0) {
				if err := retry.Do(pctx, p, func() error {
					if failing {
						free = max(1, size-cr.heldNow())
					}
					return pull(free, failing)
				}); err != nil {
					if pctx.Err() == nil {
						b.log.Error("natsbus: pull ended", "queue", queue, "err", err)
					}
					return
				}
				if failing && failures >= 3 {
					b.log.Info("natsbus: pull recovered", "queue", queue, "failures", failures)
				}
				failing, failures = false, 0
				continue
			}
			select {
			case <-cr.wake:
			case <-changed:
			case <-pctx.Done():
			}
		}
	}()
	return out
}
