package local

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/backend"
	"github.com/skeinrun/skein/pkg/runtime"
)

// Backend runs a runtime with cfg.Slots slots in this process. It is
// safe for concurrent use.
type Backend struct {
	pool   string
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu     sync.Mutex
	closed bool
	err    error
	sum    runtime.Summary
}

var _ backend.Backend = (*Backend)(nil)

// Start runs the workers on b (a connection of their own: the runtime's
// consumer and event publications then do not queue behind the
// coordinator's traffic) until Close. cfg is checked by runtime.New.
func Start(b bus.Bus, cfg runtime.Config) (*Backend, error) {
	if b == nil {
		return nil, errors.New("backend/local: nil bus")
	}
	rt, err := runtime.New(b, cfg)
	if err != nil {
		return nil, fmt.Errorf("backend/local: %w", err)
	}
	pool := cfg.Pool
	if pool == "" {
		pool = runtime.DefaultConfig().Pool
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Backend{pool: pool, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		sum, err := rt.Run(ctx)
		l.mu.Lock()
		l.sum, l.err = sum, err
		l.mu.Unlock()
	}()
	return l, nil
}

// Dispatch checks job: the local workers already pull from its queue.
// A job on another pool than the workers' is an error, since nothing
// here would run it.
func (l *Backend) Dispatch(ctx context.Context, job backend.Job) error {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return backend.ErrClosed
	}
	if err := job.Validate(); err != nil {
		return err
	}
	if job.Pool != l.pool {
		return fmt.Errorf("backend/local: job %q is on pool %q; the local workers pull pool %q", job.ID, job.Pool, l.pool)
	}
	select {
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		return fmt.Errorf("backend/local: the local workers stopped: %v", l.err)
	default:
	}
	return ctx.Err()
}

// Close stops the workers (running tasks are left for redelivery) and
// waits for them. It returns the runtime's error, if it had one.
func (l *Backend) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.cancel()
	})
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Summary returns what the workers ran (complete after Close).
func (l *Backend) Summary() runtime.Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sum
}
