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
	ok   bool          // a pull brought messages since the last state
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

func (c *credit) state() (held int, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held, ok, err = c.held, c.ok, c.err
	c.ok, c.err = false, nil
	return held, ok, err
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
// A failing pull is retried as pump retries one: with backoff, the
// queue's consumer opened again (it may have been deleted), logged once
// per streak.
func (b *Bus) consumeWindow(ctx context.Context, queue string, c jetstream.Consumer, o bus.QueueOptions, win *bus.Window) <-chan bus.Delivery {
	out := make(chan bus.Delivery)
	cr := &credit{wake: make(chan struct{}, 1)}
	pctx, cancel := context.WithCancel(ctx)
	var batches sync.WaitGroup
	// forward hands one pull request's messages over; what the request
	// did not bring frees its room when it ends.
	forward := func(batch jetstream.MessageBatch, n int, stop context.CancelFunc) {
		defer batches.Done()
		defer stop()
		got := 0
		for m := range batch.Messages() {
			got++
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
		cr.mu.Lock()
		cr.ok = cr.ok || got > 0
		cr.mu.Unlock()
		cr.add(got-n, err)
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
		pull := func(n int) error {
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
			go forward(batch, n, stop)
			return nil
		}
		for pctx.Err() == nil {
			size, changed := win.Size()
			held, ok, err := cr.state()
			if ok && failures > 0 {
				if failures >= 3 {
					b.log.Info("natsbus: pull recovered", "queue", queue, "failures", failures)
				}
				failures = 0
			}
			if err != nil {
				// A request failed without a message: the next one
				// opens the consumer again, after a pause.
				c = nil
				failures++
				if failures == 3 {
					b.log.Warn("natsbus: pull failing; retrying with backoff", "queue", queue, "err", err)
				}
				select {
				case <-time.After(min(pullRetry.Initial<<min(failures, 5), pullRetry.Max)):
				case <-pctx.Done():
					return
				}
				continue
			}
			if free := size - held; free > 0 && (4*free >= size || held == 0) {
				if err := retry.Do(pctx, p, func() error { return pull(free) }); err != nil {
					if pctx.Err() == nil {
						b.log.Error("natsbus: pull ended", "queue", queue, "err", err)
					}
					return
				}
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
