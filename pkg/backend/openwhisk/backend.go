package openwhisk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/skeinrun/skein/pkg/backend"
)

// Backend is the openwhisk compute backend: for a job of N tasks it
// invokes the runtime action non-blocking ceil(N/Batch) times with at most
// PoolThreads invocation requests in flight; each activation drains up to
// Batch tasks from the pool's queue. It is safe for concurrent use.
type Backend struct {
	cfg Config
	c   *Client

	mu       sync.Mutex
	deployed map[string]bool

	closeOnce sync.Once
	closed    chan struct{}
	base      context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

var _ backend.Backend = (*Backend)(nil)

// New checks cfg and fetches the credentials. The action is created or
// updated on the first Dispatch (or by Deploy).
func New(ctx context.Context, cfg Config) (*Backend, error) {
	c, err := NewClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	return &Backend{cfg: cfg, c: c, deployed: map[string]bool{}, closed: make(chan struct{}), base: base, cancel: cancel}, nil
}

// Client returns the backend's REST client (to read activations).
func (b *Backend) Client() *Client { return b.c }

// Stats returns the client's counters.
func (b *Backend) Stats() Stats { return b.c.Stats() }

// actionFor returns the action name and spec for a job's limits: the
// configured action, or a sibling suffixed with its limits when the job
// needs more memory or a longer timeout than the configured action has.
func (b *Backend) actionFor(job backend.Job) (string, ActionSpec) {
	mem, timeout := b.cfg.MemoryMB, b.cfg.TimeoutMS
	name := b.cfg.Action
	if job.MemoryMB > mem || job.TimeoutMS > timeout {
		mem, timeout = max(mem, job.MemoryMB), max(timeout, job.TimeoutMS)
		name = fmt.Sprintf("%s-%dm-%dms", b.cfg.Action, mem, timeout)
	}
	spec := ActionSpec{
		Exec:   Exec{Kind: b.cfg.Kind, Image: b.cfg.Image},
		Limits: Limits{Timeout: timeout, Memory: mem, Concurrency: b.cfg.Concurrency},
		Annotations: []KeyValue{
			{Key: "exec", Value: b.cfg.Kind},
			{Key: "skein", Value: "runtime"},
		},
	}
	if b.cfg.Code != "" {
		spec.Exec.Code, spec.Exec.Binary, spec.Exec.Main = b.cfg.Code, true, "main"
	}
	keys := make([]string, 0, len(b.cfg.Params))
	for k := range b.cfg.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		spec.Parameters = append(spec.Parameters, KeyValue{Key: k, Value: b.cfg.Params[k]})
	}
	keys = keys[:0]
	for k := range b.cfg.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		spec.Parameters = append(spec.Parameters, KeyValue{Key: k, Value: b.cfg.Env[k], Init: true})
	}
	return name, spec
}

// Deploy creates or updates the action for the configured limits.
func (b *Backend) Deploy(ctx context.Context) error {
	name, spec := b.actionFor(backend.Job{})
	return b.deploy(ctx, name, spec, true)
}

func (b *Backend) deploy(ctx context.Context, name string, spec ActionSpec, force bool) error {
	b.mu.Lock()
	defer b.mu.Unlock() // serialises deploys: concurrent dispatches deploy once
	if b.deployed[name] && !force {
		return nil
	}
	if err := b.c.PutAction(ctx, name, spec); err != nil {
		return fmt.Errorf("openwhisk: deploy action %s: %w", name, err)
	}
	b.deployed[name] = true
	b.c.log.Info("openwhisk action deployed", "action", name, "kind", spec.Exec.Kind, "image", spec.Exec.Image,
		"memory_mb", spec.Limits.Memory, "timeout_ms", spec.Limits.Timeout)
	return nil
}

// Dispatch invokes the runtime action ceil(job.Tasks/Batch) times and
// returns once every invocation was accepted (or the first failure: then
// the invocations still queued are not made, and the error says how many
// were). A 404 on invoke (the action was deleted) redeploys the action and
// retries that invocation once.
func (b *Backend) Dispatch(ctx context.Context, job backend.Job) error {
	select {
	case <-b.closed:
		return backend.ErrClosed
	default:
	}
	if err := job.Validate(); err != nil {
		return err
	}
	b.wg.Add(1)
	defer b.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.base, cancel)
	defer stop()

	name, spec := b.actionFor(job)
	if err := b.deploy(ctx, name, spec, false); err != nil {
		return err
	}
	batch := b.cfg.Batch
	n := (job.Tasks + batch - 1) / batch
	threads := b.cfg.PoolThreads
	if job.PoolThreads > 0 {
		threads = job.PoolThreads
	}
	threads = min(threads, n)

	seqs := make(chan int)
	var (
		accepted atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range seqs {
				tasks := batch
				if seq == n-1 {
					tasks = job.Tasks - batch*(n-1)
				}
				params := map[string]any{
					ParamJob: job.ID, ParamPool: job.Pool, ParamMaxTasks: tasks,
					ParamIdleMS: b.cfg.IdleMS, ParamSeq: seq,
				}
				if job.Queue != "" {
					params[ParamQueue] = job.Queue
				}
				if err := b.invoke(ctx, name, spec, params); err != nil {
					fail(fmt.Errorf("openwhisk: job %s: invocation %d of %d: %w", job.ID, seq+1, n, err))
					continue
				}
				accepted.Add(1)
			}
		}()
	}
feed:
	for seq := range n {
		select {
		case seqs <- seq:
		case <-ctx.Done():
			break feed
		}
	}
	close(seqs)
	wg.Wait()
	if firstErr == nil && accepted.Load() < int64(n) {
		firstErr = fmt.Errorf("openwhisk: job %s: %w", job.ID, context.Cause(ctx))
		select {
		case <-b.closed:
			firstErr = fmt.Errorf("openwhisk: job %s: %w", job.ID, backend.ErrClosed)
		default:
		}
	}
	if firstErr != nil {
		return fmt.Errorf("%w (%d of %d invocations accepted)", firstErr, accepted.Load(), n)
	}
	b.c.log.Debug("openwhisk job dispatched", "job", job.ID, "pool", job.Pool, "tasks", job.Tasks, "invocations", n, "threads", threads)
	return nil
}

func (b *Backend) invoke(ctx context.Context, name string, spec ActionSpec, params map[string]any) error {
	_, err := b.c.Invoke(ctx, name, params)
	if errors.Is(err, ErrNotFound) {
		b.c.log.Warn("openwhisk action missing on invoke, redeploying", "action", name)
		b.c.redeploys.Add(1)
		if derr := b.deploy(ctx, name, spec, true); derr != nil {
			return errors.Join(err, derr)
		}
		_, err = b.c.Invoke(ctx, name, params)
	}
	return err
}

// Close stops running dispatches (they return ErrClosed) and waits for
// them. It is idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		b.cancel()
	})
	b.wg.Wait()
	return nil
}
