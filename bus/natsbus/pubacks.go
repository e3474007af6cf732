package natsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pubAcks publishes batches of messages to JetStream and waits for the
// stream's acknowledgement of each: one wildcard subscription on the
// connection's inbox takes every acknowledgement, and a batch is one
// counter and one channel, however many messages it has.
//
// It replaces the JetStream library's asynchronous publisher on the path
// of every task (Enqueue), which keeps a future, two channels and a map
// entry per message and parses every acknowledgement as JSON: that was
// two fifths of the coordinator's processor time in a large map. Here a
// successful acknowledgement (`{"stream":…`) is recognised without
// parsing it; anything else — an API error, a 503 status when no stream
// takes the subject — is decoded and returned as the library would.
//
// A lost connection fails every batch waiting (as the library does): the
// acknowledgements of its messages may never come, and the caller
// publishes again. So does a batch that hears no acknowledgement for
// ackTimeout on a connection that stays up: on a cluster, the node that
// leads the stream may die (or hang) with the batch's messages on their
// way to it through another node, and nothing would tell the publisher
// (TestClusterEnqueueLeaderLost).
type pubAcks struct {
	nc *nats.Conn

	mu      sync.Mutex
	prefix  string // the inbox subscribed to, with a trailing dot
	sub     *nats.Subscription
	next    uint64
	pending map[uint64]*ackBatch
}

// ackBatch is a batch of published messages waiting for acknowledgements.
// Its fields are guarded by pubAcks.mu.
type ackBatch struct {
	left int
	err  error
	done chan struct{}
	last time.Time // the last acknowledgement, or when the batch was sent
}

// finish records err (the first one wins) for one message of the batch.
func (b *ackBatch) finish(err error) {
	if b.err == nil {
		b.err = err
	}
	if b.left--; b.left == 0 {
		close(b.done)
	} else {
		b.last = time.Now()
	}
}

// ackTimeout bounds the wait for a batch's next acknowledgement, as the
// JetStream library's default timeout bounds a synchronous publish.
const ackTimeout = 5 * time.Second

// errNoAck is a batch's error when its acknowledgements stopped coming.
var errNoAck = fmt.Errorf("%w: no acknowledgement from the stream for %s (its leader lost or overloaded?)", nats.ErrTimeout, ackTimeout)

// publish publishes msgs, replies to the inbox, and waits until the
// stream has acknowledged every one, one of them failed, or ctx ends.
func (p *pubAcks) publish(ctx context.Context, msgs []*nats.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	b := &ackBatch{left: len(msgs), done: make(chan struct{})}
	p.mu.Lock()
	if err := p.subscribeLocked(); err != nil {
		p.mu.Unlock()
		return err
	}
	first := p.next
	p.next += uint64(len(msgs))
	for i := range msgs {
		p.pending[first+uint64(i)] = b
	}
	prefix := p.prefix
	p.mu.Unlock()

	reply := make([]byte, 0, len(prefix)+13)
	for i, m := range msgs {
		reply = strconv.AppendUint(append(reply[:0], prefix...), first+uint64(i), 36)
		m.Reply = string(reply)
		if err := p.nc.PublishMsg(m); err != nil {
			p.forget(first, len(msgs))
			return err
		}
	}
	p.mu.Lock()
	b.last = time.Now()
	p.mu.Unlock()
	timer := time.NewTimer(ackTimeout)
	defer timer.Stop()
	for {
		select {
		case <-b.done:
			return b.err
		case <-ctx.Done():
			p.forget(first, len(msgs))
			return ctx.Err()
		case <-timer.C:
			p.mu.Lock()
			left, wait := b.left, time.Until(b.last.Add(ackTimeout))
			p.mu.Unlock()
			if left == 0 {
				<-b.done
				return b.err
			}
			if wait > 0 {
				timer.Reset(wait)
				continue
			}
			p.forget(first, len(msgs))
			return fmt.Errorf("%w (%d of %d messages unacknowledged)", errNoAck, left, len(msgs))
		}
	}
}

// subscribeLocked subscribes to the inbox the first time it is needed.
func (p *pubAcks) subscribeLocked() error {
	if p.sub != nil {
		return nil
	}
	prefix := p.nc.NewInbox() + "."
	sub, err := p.nc.Subscribe(prefix+"*", p.onAck)
	if err != nil {
		return err
	}
	// Acknowledgements of a large map arrive faster than any single
	// callback: the defaults (65,536 messages) would drop some.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	p.prefix, p.sub, p.pending = prefix, sub, make(map[uint64]*ackBatch)
	return nil
}

// forget drops the messages of a batch that will not be waited for.
func (p *pubAcks) forget(first uint64, n int) {
	p.mu.Lock()
	for i := range n {
		delete(p.pending, first+uint64(i))
	}
	p.mu.Unlock()
}

// onAck takes one acknowledgement.
func (p *pubAcks) onAck(m *nats.Msg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(m.Subject) <= len(p.prefix) {
		return
	}
	id, err := strconv.ParseUint(m.Subject[len(p.prefix):], 36, 64)
	if err != nil {
		return
	}
	b := p.pending[id]
	if b == nil {
		return // its batch gave up waiting
	}
	delete(p.pending, id)
	b.finish(ackError(m))
}

// disconnected fails every batch waiting: the connection that would bring
// their acknowledgements is gone.
func (p *pubAcks) disconnected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, b := range p.pending {
		delete(p.pending, id)
		b.finish(nats.ErrDisconnected)
	}
}

// ackOK is how the server starts a successful acknowledgement.
var ackOK = []byte(`{"stream":`)

// ackError reads an acknowledgement: nil when the stream stored the
// message, else why not.
func ackError(m *nats.Msg) error {
	if bytes.HasPrefix(m.Data, ackOK) && !bytes.Contains(m.Data, []byte(`"error"`)) {
		return nil
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return jetstream.ErrNoStreamResponse
	}
	var resp struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return resp.Error
	}
	if resp.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}
