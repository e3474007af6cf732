package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/internal/retry"
)

// A server can come back without Skein's streams: one run with memory
// storage, a store on a volume that was not kept, a machine replaced. Its
// clients reconnect by themselves, but what they had on the streams is
// gone, and with it the positions they had reached:
//
//   - The bus makes the streams again (restoreStreams), at each
//     reconnection and whenever the server says a stream is missing, so
//     that publishing, enqueueing and the queues' consumers carry on
//     without waiting for a new client to make them. A connection whose
//     credentials may not make streams (a runtime's, deploy/nats) checks
//     again every few seconds until the coordinator's has made them.
//   - A queue's consumer whose task stream was made again makes its
//     durable consumer again: nats-server 2.9 leaves a pull request to a
//     consumer that no longer exists unanswered, and the queue would wait
//     for ever.
//   - A subscription to the event stream follows the stream by its
//     creation time. One that finds it made again reads the new stream
//     from its start: resumed after its last position on the old one, it
//     would skip the new stream's first records (the job log's: the jobs
//     accepted since) and wait for the new stream to reach that position.
//     A bounded replay (SubscribeOptions.To) ends instead, as its
//     positions name messages of the old stream.
//
// Tasks and events stored before are lost with the store. The bus tells
// the coordinator (StoreLost), which fails the jobs that were running at
// once (pkg/coordinator, restartedLog).

// restoreTimeout bounds one attempt to make the streams again.
const restoreTimeout = 30 * time.Second

// errStreamReplaced ends a bounded replay whose stream was made again.
var errStreamReplaced = errors.New("natsbus: the event stream was made again (the server lost its store?): the positions replayed are gone")

// streamState is what the bus knows of its streams and who reads them.
type streamState struct {
	mu        sync.Mutex
	created   time.Time // the event stream's creation time, as last seen
	subs      map[*eventsSub]struct{}
	tasks     time.Time // the task stream's creation time, as last seen
	queues    map[*func()]struct{}
	restoring bool
	lost      chan struct{} // StoreLost
	watching  bool          // subscribed to the event stream's creations
}

// StoreLost implements bus.StoreWatcher: the channel receives when the
// bus finds its event stream made again.
func (b *Bus) StoreLost() <-chan struct{} { return b.streams.lost }

// eventsSub is a subscription to the event stream: the stream it reads
// (by creation time), and how to make it open a new consumer.
type eventsSub struct {
	mu      sync.Mutex
	created time.Time
	restart func() // stops the subscription's current consumer; nil until pumping
}

// sameStream reports whether created is the stream the subscription reads,
// and takes it as its stream from now on.
func (s *eventsSub) sameStream(created time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created.Equal(created) {
		return true
	}
	s.created = created
	return false
}

// follow registers a subscription that reads the event stream created at
// created (zero: the stream as the bus last saw it); unfollow ends that.
func (b *Bus) follow(created time.Time) (s *eventsSub, unfollow func()) {
	b.streams.mu.Lock()
	defer b.streams.mu.Unlock()
	if created.IsZero() {
		created = b.streams.created
	}
	s = &eventsSub{created: created}
	if b.streams.subs == nil {
		b.streams.subs = make(map[*eventsSub]struct{})
	}
	b.streams.subs[s] = struct{}{}
	return s, func() {
		b.streams.mu.Lock()
		delete(b.streams.subs, s)
		b.streams.mu.Unlock()
	}
}

// pumping sets how to make the subscription open a new consumer.
func (s *eventsSub) pumping(restart func()) {
	s.mu.Lock()
	s.restart = restart
	s.mu.Unlock()
}

// sawEvents records the event stream's creation time. When it differs
// from the one seen before, the stream was made again: every subscription
// opens a new consumer, which reads the new stream from its start.
func (b *Bus) sawEvents(created time.Time) {
	b.streams.mu.Lock()
	old := b.streams.created
	b.streams.created = created
	replaced := !old.IsZero() && !old.Equal(created)
	var restarts []func()
	if replaced {
		restarts = b.subRestarts()
	}
	b.streams.mu.Unlock()
	if replaced {
		select {
		case b.streams.lost <- struct{}{}:
		default:
		}
	}
	if len(restarts) > 0 {
		b.log.Warn("natsbus: the event stream was made again (the server lost its store?); subscriptions read the new one from its start", "stream", b.eventsStream, "subscriptions", len(restarts))
	}
	for _, r := range restarts {
		r()
	}
}

// subRestarts returns how to make each subscription open a new
// consumer. Called with b.streams.mu held.
func (b *Bus) subRestarts() []func() {
	var rs []func()
	for s := range b.streams.subs {
		s.mu.Lock()
		if s.restart != nil {
			rs = append(rs, s.restart)
		}
		s.mu.Unlock()
	}
	return rs
}

// watchCreations subscribes, once, to the server's advisory of the event
// stream's creation, and records the creation time of every new stream
// (sawEvents).
//
// A subscription's ordered consumer that the server tells its consumer
// was deleted makes itself again (nats.go), resuming after its position;
// when another client has made the stream again meanwhile, that succeeds
// on the new stream and the bus never hears of it: no StoreLost, and the
// subscription waits for the new stream to reach the old position. The
// advisory tells every bus of the stream made again while it stays
// connected (an operator's `nats stream rm`); a reconnection checks the
// streams itself (restoreStreams). A credential without the right to
// subscribe to it gets the server's permissions violation logged and
// goes on without it.
func (b *Bus) watchCreations() {
	b.streams.mu.Lock()
	if b.streams.watching {
		b.streams.mu.Unlock()
		return
	}
	b.streams.watching = true
	b.streams.mu.Unlock()
	subject := "$JS.EVENT.ADVISORY.STREAM.CREATED." + b.eventsStream
	_, err := b.nc.Subscribe(subject, func(*nats.Msg) {
		if b.isClosed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
		defer cancel()
		st, err := b.js.Stream(ctx, b.eventsStream)
		if err != nil {
			b.log.Debug("natsbus: reading the event stream made again", "err", err)
			b.noStream(err, "the event stream's creation advisory")
			return
		}
		b.sawEvents(st.CachedInfo().Created)
	})
	if err != nil {
		b.log.Warn("natsbus: cannot follow the event stream's creations; a stream made again by another client while connected goes unnoticed", "subject", subject, "err", err)
	}
}

// sawTasks records the task stream's creation time. When it differs from
// the one seen before, the stream was made again, and the queues' durable
// consumers with it: every queue consumer makes its own again.
func (b *Bus) sawTasks(created time.Time) {
	b.streams.mu.Lock()
	old := b.streams.tasks
	b.streams.tasks = created
	var resets []func()
	if !old.IsZero() && !old.Equal(created) {
		b.tasksGen.Add(1)
		for r := range b.streams.queues {
			resets = append(resets, *r)
		}
	}
	b.streams.mu.Unlock()
	if len(resets) > 0 {
		b.log.Warn("natsbus: the task stream was made again (the server lost its store?); the queues' consumers are made again", "stream", b.tasksStream, "consumers", len(resets))
	}
	for _, r := range resets {
		r()
	}
}

// followTasks registers reset, called when the task stream is found made
// again, until the returned function is called.
func (b *Bus) followTasks(reset func()) (unfollow func()) {
	b.streams.mu.Lock()
	defer b.streams.mu.Unlock()
	if b.streams.queues == nil {
		b.streams.queues = make(map[*func()]struct{})
	}
	r := &reset
	b.streams.queues[r] = struct{}{}
	return func() {
		b.streams.mu.Lock()
		delete(b.streams.queues, r)
		b.streams.mu.Unlock()
	}
}

// restoreStreams makes Skein's streams again if they are gone, in the
// background and one attempt at a time; why says what prompted it.
func (b *Bus) restoreStreams(why string) {
	b.streams.mu.Lock()
	if b.streams.restoring || b.isClosed() {
		b.streams.mu.Unlock()
		return
	}
	b.streams.restoring = true
	b.wg.Add(1)
	b.streams.mu.Unlock()
	go func() {
		defer b.wg.Done()
		defer func() {
			b.streams.mu.Lock()
			b.streams.restoring = false
			b.streams.mu.Unlock()
		}()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-b.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		// Until the streams are there: a connection that may not make
		// them (a runtime's) checks again until the coordinator's has.
		_ = retry.Do(ctx, restoreRetry, func() error {
			actx, acancel := context.WithTimeout(ctx, restoreTimeout)
			defer acancel()
			made, err := b.ensureStreams(actx)
			switch {
			case err != nil:
				b.log.Debug("natsbus: checking the streams", "after", why, "err", err)
			case len(made) > 0:
				b.log.Warn("natsbus: the server had lost streams (restarted with an empty store?); made them again: what was stored on them is lost", "after", why, "streams", fmt.Sprint(made))
			}
			return err
		})
	}()
}

// restoreRetry paces the checks of a connection that cannot make the
// streams itself.
var restoreRetry = retry.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second}

// noStream makes the streams again in the background when err says that
// no stream took a message or that a stream is missing.
func (b *Bus) noStream(err error, why string) {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
		b.restoreStreams(why)
	}
}
