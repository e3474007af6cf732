package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
)

const replyTo = "amq.rabbitmq.reply-to"

func (b *Bus) rpcQueue(subject string) string { return b.opts.Prefix + ".rpc." + subject }

// rpcExchange routes requests to the RPC queues (a queue's binding key is
// its name): requesters then need write permission on this exchange only,
// not on the default exchange, which reaches every queue.
func (b *Bus) rpcExchange() string { return b.opts.Prefix + ".rpc" }

type reply struct {
	data []byte
	err  error
}

// rpcClient is the requester side: one channel per connection that
// consumes direct replies (amq.rabbitmq.reply-to) and publishes requests
// with mandatory set, so that a request nobody serves comes back as a
// basic.return.
type rpcClient struct {
	ch   *amqp.Channel
	seq  atomic.Uint64
	mu   sync.Mutex
	wait map[string]chan reply
	dead error
}

func (c *rpcClient) register(id string) (chan reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead != nil {
		return nil, c.dead
	}
	r := make(chan reply, 1)
	c.wait[id] = r
	return r, nil
}

func (c *rpcClient) resolve(id string, r reply) {
	c.mu.Lock()
	w, ok := c.wait[id]
	delete(c.wait, id)
	c.mu.Unlock()
	if ok {
		w <- r
	}
}

func (c *rpcClient) forget(id string) {
	c.mu.Lock()
	delete(c.wait, id)
	c.mu.Unlock()
}

// fail ends every waiting request with err.
func (c *rpcClient) fail(err error) {
	c.mu.Lock()
	if c.dead == nil {
		c.dead = err
	}
	w := c.wait
	c.wait = map[string]chan reply{}
	c.mu.Unlock()
	for _, r := range w {
		r <- reply{err: err}
	}
}

func (b *Bus) rpcClient(ctx context.Context) (*rpcClient, error) {
	for {
		_, gen, err := b.current(ctx)
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		if b.gen == gen && b.rpc != nil && b.rpc.dead == nil {
			c := b.rpc
			b.mu.Unlock()
			return c, nil
		}
		b.mu.Unlock()
		ch, err := b.channel(ctx)
		if err != nil {
			return nil, err
		}
		replies, err := ch.ConsumeWithContext(context.Background(), replyTo, "", true, false, false, false, nil)
		if err != nil {
			_ = ch.Close()
			return nil, fmt.Errorf("rabbitmq: consume %s: %w", replyTo, err)
		}
		returns := ch.NotifyReturn(make(chan amqp.Return, 16))
		c := &rpcClient{ch: ch, wait: map[string]chan reply{}}
		b.mu.Lock()
		if b.gen != gen || (b.rpc != nil && b.rpc.dead == nil) {
			b.mu.Unlock()
			_ = ch.Close()
			continue
		}
		b.rpc = c
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				select {
				case d, ok := <-replies:
					if !ok {
						c.fail(fmt.Errorf("rabbitmq: reply channel to %s closed during the request", b.ConnectedURL()))
						b.mu.Lock()
						if b.rpc == c {
							b.rpc = nil
						}
						b.mu.Unlock()
						return
					}
					if msg := headerString(d.Headers, hdrError); msg != "" {
						c.resolve(d.CorrelationId, reply{err: &bus.RemoteError{Msg: msg}})
					} else {
						c.resolve(d.CorrelationId, reply{data: d.Body})
					}
				case r, ok := <-returns:
					if !ok {
						returns = nil
						continue
					}
					c.resolve(r.CorrelationId, reply{err: fmt.Errorf("rabbitmq: request on %s: %w", r.RoutingKey, bus.ErrNoResponders)})
				}
			}
		}()
		return c, nil
	}
}

// Request implements bus.RPC over direct reply-to. A request is not
// retried across a reconnect (it may have been served): it fails, and the
// caller decides.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if b.isClosed() {
		return nil, bus.ErrClosed
	}
	if err := validSubject("subject", subject); err != nil {
		return nil, err
	}
	if err := b.checkSize("request on "+subject, len(data)); err != nil {
		return nil, err
	}
	c, err := b.rpcClient(ctx)
	if err != nil {
		return nil, err
	}
	id := strconv.FormatUint(c.seq.Add(1), 36)
	wait, err := c.register(id)
	if err != nil {
		return nil, err
	}
	defer c.forget(id)
	p := amqp.Publishing{Body: data, CorrelationId: id, ReplyTo: replyTo, Headers: amqp.Table{}}
	if err := c.ch.PublishWithContext(ctx, b.rpcExchange(), b.rpcQueue(subject), true, false, p); err != nil {
		return nil, fmt.Errorf("rabbitmq: request on %s: %w", subject, err)
	}
	select {
	case r := <-wait:
		return r.data, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("rabbitmq: request on %s: %w", subject, ctx.Err())
	case <-b.done:
		return nil, bus.ErrClosed
	}
}

// Serve implements bus.RPC. It declares the auto-delete queue
// "<prefix>.rpc.<subject>", which every server of subject consumes from
// (competing consumers), and returns once it is serving; handlers run
// concurrently (up to Options.RPCConcurrency) until ctx is done. After a
// reconnect it serves again.
func (b *Bus) Serve(ctx context.Context, subject string, h bus.Handler) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if err := validSubject("subject", subject); err != nil {
		return err
	}
	ch, deliveries, err := b.serve(ctx, subject)
	if err != nil {
		return err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for attempt := 0; ; {
			if ch != nil {
				b.handle(ctx, subject, ch, deliveries, h)
				closeConsumer(ch, deliveries)
				ch = nil
			}
			if ctx.Err() != nil || b.isClosed() {
				return
			}
			ch, deliveries, err = b.serve(ctx, subject)
			if err != nil {
				if attempt == 0 || attempt%10 == 9 {
					b.log.Warn("rabbitmq serve failed; retrying", "subject", subject, "attempt", attempt+1, "err", err)
				}
				if !b.backoff(ctx, attempt) {
					return
				}
				attempt++
				continue
			}
			b.log.Info("rabbitmq server resubscribed", "subject", subject, "attempts", attempt+1, "url", b.ConnectedURL())
			attempt = 0
		}
	}()
	return nil
}

// rpcQueueGone reports whether subject's RPC queue is known not to exist
// (a passive declare answered NOT_FOUND); any other outcome is not proof.
func (b *Bus) rpcQueueGone(ctx context.Context, subject string) bool {
	cctx, cancel := context.WithTimeout(ctx, rpcQueueCheck)
	defer cancel()
	ch, err := b.channel(cctx)
	if err != nil {
		return false
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(b.rpcQueue(subject), false, true, false, false, nil)
	var aerr *amqp.Error
	return errors.As(err, &aerr) && aerr.Code == amqp.NotFound
}

func (b *Bus) serve(ctx context.Context, subject string) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := b.channel(ctx)
	if err != nil {
		return nil, nil, err
	}
	q := b.rpcQueue(subject)
	_, err = ch.QueueDeclare(q, false, true, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic})
	if err == nil {
		err = ch.QueueBind(q, q, b.rpcExchange(), false, nil)
	}
	if err == nil {
		// One request unacknowledged at a time: handle acks each as it
		// takes it. A server that is stopped (SIGSTOP, a frozen machine)
		// keeps its connection until the broker misses its heartbeats,
		// and meanwhile holds what the broker handed it; with the
		// handlers' concurrency as the prefetch, it held every other
		// request (the queue hands them round) up to that many, each
		// answered only by the client's copy a HedgeAfter later.
		err = ch.Qos(1, 0, false)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.ConsumeWithContext(context.Background(), q, "", false, false, false, false, nil)
	}
	if err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("rabbitmq: serve %s: %w", subject, err)
	}
	return ch, deliveries, nil
}

// rpcQueueCheck is how often a server checks that its RPC queue still
// exists (see handle).
var rpcQueueCheck = 2 * time.Second

// handle answers the requests of one consumer until its deliveries end,
// ctx ends, the bus closes, or its queue is found gone. On a cluster the
// RPC queue (transient, on the node of the connection that declared it)
// is deleted by the others when its node dies; a server that moved to
// another node and declared it again at that moment can find the old
// queue, consume from it, and then see it deleted without a
// basic.cancel (RabbitMQ 3.10), serving nothing from then on. So every
// rpcQueueCheck the queue's existence is checked, and a server whose
// queue is gone declares it again.
//
// A request is acknowledged as its handler starts, and the next one is
// taken only while fewer than Options.RPCConcurrency handlers run: the
// prefetch of one is then all a stopped server holds. A server that dies
// while it handles a request leaves it unanswered, and the requester
// sends it again (the client sends a copy of a request unanswered for a
// second).
func (b *Bus) handle(ctx context.Context, subject string, ch *amqp.Channel, deliveries <-chan amqp.Delivery, h bus.Handler) {
	var wg sync.WaitGroup
	defer wg.Wait()
	check := time.NewTicker(rpcQueueCheck)
	defer check.Stop()
	running := make(chan struct{}, b.opts.RPCConcurrency)
	for {
		// A handler's place first: while every one is taken, this server
		// holds at most the one request the broker has handed it
		// (prefetch 1), and the others wait in the queue, where another
		// server can take them.
		select {
		case running <- struct{}{}:
		case <-ctx.Done():
			return
		case <-b.done:
			return
		}
		d, ok := b.nextRequest(ctx, subject, deliveries, check.C)
		if !ok {
			return
		}
		_ = ch.Ack(d.DeliveryTag, false)
		wg.Add(1)
		go func() {
			defer func() { <-running; wg.Done() }()
			req := message(&d, subject)
			data, err := h(ctx, req)
			p := amqp.Publishing{CorrelationId: d.CorrelationId, Headers: amqp.Table{}}
			switch {
			case err != nil:
				msg := err.Error()
				if msg == "" {
					msg = "handler failed"
				}
				p.Headers[hdrError] = msg
			case len(data) > b.opts.MaxMessageSize:
				p.Headers[hdrError] = fmt.Sprintf("reply of %d bytes exceeds the bus limit of %d", len(data), b.opts.MaxMessageSize)
			default:
				p.Body = data
			}
			switch {
			case d.ReplyTo == "":
			case !strings.HasPrefix(d.ReplyTo, replyTo+"."):
				// Only direct reply-to: any other name would make this
				// server publish its answer into a queue of the
				// requester's choosing (a work queue, say) with the
				// server's own rights.
				b.log.Warn("rabbitmq request not answered: its reply-to is not a direct reply-to", "subject", subject, "reply_to", d.ReplyTo)
			default:
				if err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, p); err != nil {
					b.log.Warn("rabbitmq reply failed", "subject", subject, "err", err)
				}
			}
		}()
	}
}

// nextRequest waits for a request of deliveries; false once deliveries
// end, ctx ends, the bus closes, or subject's queue is found gone (a
// check on each tick of check).
func (b *Bus) nextRequest(ctx context.Context, subject string, deliveries <-chan amqp.Delivery, check <-chan time.Time) (amqp.Delivery, bool) {
	for {
		select {
		case d, ok := <-deliveries:
			return d, ok
		case <-check:
			if b.rpcQueueGone(ctx, subject) {
				b.log.Warn("rabbitmq RPC queue gone under its consumer; declaring it again", "subject", subject, "url", b.ConnectedURL())
				return amqp.Delivery{}, false
			}
		case <-ctx.Done():
			return amqp.Delivery{}, false
		case <-b.done:
			return amqp.Delivery{}, false
		}
	}
}
