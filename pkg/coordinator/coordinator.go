package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/telemetry"
	"github.com/skeinrun/skein/pkg/wire"
)

// Config configures a coordinator.
type Config struct {
	// Pool is the queue of jobs that name none. Default "default".
	Pool string
	// ProgressInterval is how often a running job's progress is
	// broadcast. Default 250ms.
	ProgressInterval time.Duration
	// Retention is how long a finished job's results stay in memory for
	// result queries. Default 15m.
	Retention time.Duration
	// ResultMemory bounds the bytes of one map job's results held in
	// memory; later results are read back from the event stream when
	// asked for (results.go). Default 64 MiB.
	ResultMemory int64
	// PublishBatch bounds task publications in flight per job when the
	// job does not set invoke_pool_threads. Default 500.
	PublishBatch int
	// JobBacklog bounds how many of a job's map (or call) tasks are on
	// the queue or running, not done yet: publishing waits for tasks to
	// end before it goes past it. A pool's queue is first in, first
	// out, so without the bound a job submitted after a large one waits
	// behind all of the large one's tasks; with it, behind at most
	// JobBacklog of each job running. Within it each job's bound follows
	// its pace (pace.go). Default 8192 (deep enough that one job of short
	// tasks keeps its runtimes busy); negative: no bound.
	JobBacklog int
	// QueuedEvery bounds how often a job whose tasks are being published
	// records on the job log how far the publishing got: after each
	// batch of tasks the bus confirmed, at most once per QueuedEvery. A
	// coordinator taking the job over publishes only the tasks after
	// that point (a task queued twice would run twice), so at most a
	// batch or QueuedEvery of publishing runs twice. Default 10ms;
	// negative: never (a takeover publishes again every task that has
	// no outcome).
	QueuedEvery time.Duration
	// StallAfter: when a job with tasks outstanding has seen no event for
	// this long, the Published hook is called again with the number of
	// outstanding tasks, so that a compute backend whose runtimes vanished
	// (an OpenWhisk activation killed mid-task) makes new ones. Default
	// 60s; negative: never.
	StallAfter time.Duration
	// Lease is how long a coordinator that stopped being heard keeps its
	// jobs before another coordinator of the namespace takes them over;
	// a coordinator that cannot renew its lease stops acting on its jobs
	// before that (own.go). Used once the coordinator has joined its
	// namespace (Recover). Default 2.4s.
	Lease time.Duration
	// Heartbeats, when set, carries the coordinator's heartbeats instead
	// of the main bus: a connection of their own, so that a flood of
	// events on the main connection (many jobs, fast runtimes) does not
	// delay them past the lease. The coordinator does not close it.
	Heartbeats bus.Broadcast
	// Signer, when set, signs the messages that decide outcomes: tasks,
	// reducer feeds and end records (coordinator --sign-key), so that
	// runtimes and submitters can refuse what others published.
	Signer Signer
	// Hooks extend job processing (storage partitioning, large values,
	// streaming reduce). Optional.
	Hooks  Hooks
	Logger *slog.Logger
	// Telemetry records the job spans and task metrics; nil means off.
	Telemetry *telemetry.Telemetry
	// Observer, when set, is told of every task recorded (Prometheus
	// metrics, pkg/metrics). Optional.
	Observer Observer
}

// DefaultLease is the default Config.Lease: a dead coordinator's jobs are
// taken over within about that long.
const DefaultLease = 2400 * time.Millisecond

// DefaultJobBacklog is the default Config.JobBacklog.
const DefaultJobBacklog = 8192

// backlogBatch is a publishing batch of size n made to fit the job
// backlog.
func (c *Config) backlogBatch(n int) int {
	if c.JobBacklog > 0 {
		return min(n, c.JobBacklog)
	}
	return n
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Pool: "default", ProgressInterval: 250 * time.Millisecond, Retention: 15 * time.Minute, PublishBatch: 500, JobBacklog: DefaultJobBacklog, QueuedEvery: 10 * time.Millisecond}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Pool != "" && !validPool(c.Pool) {
		errs = append(errs, fmt.Errorf("pool %q: letters, digits, - and _ only", c.Pool))
	}
	if c.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("progress interval %v: must not be negative", c.ProgressInterval))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention %v: must not be negative", c.Retention))
	}
	if c.PublishBatch < 0 {
		errs = append(errs, fmt.Errorf("publish batch %d: must not be negative", c.PublishBatch))
	}
	if c.Lease != 0 && (c.Lease < 200*time.Millisecond || c.Lease > 10*time.Minute) {
		errs = append(errs, fmt.Errorf("lease %v: want 200ms to 10m", c.Lease))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Pool == "" {
		c.Pool = d.Pool
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = d.ProgressInterval
	}
	if c.Retention == 0 {
		c.Retention = d.Retention
	}
	if c.PublishBatch == 0 {
		c.PublishBatch = d.PublishBatch
	}
	if c.JobBacklog == 0 {
		c.JobBacklog = d.JobBacklog
	}
	if c.QueuedEvery == 0 {
		c.QueuedEvery = d.QueuedEvery
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.ResultMemory == 0 {
		c.ResultMemory = 64 << 20
	}
	if c.StallAfter == 0 {
		c.StallAfter = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Telemetry == nil {
		c.Telemetry = telemetry.Off()
	}
}

// Hooks let other packages take part in a job's life without the
// coordinator depending on them.
type Hooks struct {
	// Expand turns iterdata elements into task inputs when they need
	// more than Lithops' plain rules (storage URLs to be partitioned).
	// It returns nil inputs to fall back to the plain rules.
	Expand func(ctx context.Context, spec *wire.JobSpec, elems []wire.Value, extra map[string]wire.Value) ([]Input, []*wire.Object, error)
	// Spill is called with task inputs of a job, inputs[k] being task
	// first+k's: once with every input of a job whose inputs are made up
	// front (a call, iterdata expanded by Expand), else with each input
	// when its task is published. It may store large inputs elsewhere
	// and set Input.Ref in place of their Args and Kwargs.
	Spill func(ctx context.Context, spec *wire.JobSpec, first int, inputs []Input) error
	// LoadInput opens a job input the submitter put in storage
	// (wire.InputRef.URL); without it such jobs are refused.
	LoadInput func(ctx context.Context, spec *wire.JobSpec, url string) (io.ReadCloser, error)
	// Ended is called once when a job reaches a terminal state (cleanup
	// of artifacts).
	Ended func(ctx context.Context, spec *wire.JobSpec, st wire.JobStatus)
	// Poll follows poll-mode jobs (JobSpec.Monitor "poll") by listing
	// their status objects; without it such jobs are refused.
	Poll PollFunc
	// Published is called after tasks of the job went on its pool's
	// queue: once with all the map (or call) tasks when publishing ends,
	// or earlier when the job's backlog (at most JobBacklog, following
	// its pace) is full (the rest are published as earlier ones end), then
	// with 1 for every task enqueued later on the pool or its reduce
	// queue (retry, reducer; not a reducer_wait_local reducer, which the
	// submitter runs). A compute
	// backend uses it to make runtimes exist (backend.Backend.Dispatch).
	// It runs on the publishing goroutine; an error fails the job.
	Published func(ctx context.Context, spec *wire.JobSpec, tasks int) error
	// PublishedReduce, when set, is called instead of Published for
	// reducers put on the pool's reduce queue (a reducer's first attempt
	// or a retry), with their number; a stalled map-reduce job calls it
	// with 1 besides Published. Set, it tells that Published is then for
	// the pool's other tasks only.
	PublishedReduce func(ctx context.Context, spec *wire.JobSpec, tasks int) error
}

// Signer signs a message before it is published, and checks that a
// record read back from the job log carries its signature (sign.Signer).
// It must be safe for concurrent use.
type Signer interface {
	Sign(m *bus.Message)
	Verify(m bus.Message) error
}

// signedByUs reports whether m carries the coordinator's signature, or
// signing is off.
func (c *Coordinator) signedByUs(m bus.Message) bool {
	return c.cfg.Signer == nil || c.cfg.Signer.Verify(m) == nil
}

// sign signs m when the coordinator has a signer.
func (c *Coordinator) sign(m *bus.Message) {
	if c.cfg.Signer != nil {
		c.cfg.Signer.Sign(m)
	}
}

// ErrUnknownJob is returned for a job id the coordinator does not hold.
var ErrUnknownJob = errors.New("unknown job")

// Coordinator accepts jobs, publishes their tasks, and follows their
// events to the end. It is safe for concurrent use.
type Coordinator struct {
	bus bus.Bus
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	jobs map[string]*job
	// submitting holds the ids of the API submits being taken here, each
	// closed when its submit is done (api.go's holdSubmit).
	submitting map[string]chan struct{}
	own        *ownership
	pace       pacer // the pace of the functions run (pace.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a coordinator on b. Call Serve to answer API requests, or
// use Submit and the other methods in-process.
func New(b bus.Bus, cfg Config) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator config: %w", err)
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{bus: b, cfg: cfg, log: cfg.Logger, jobs: make(map[string]*job), submitting: make(map[string]chan struct{}), ctx: ctx, cancel: cancel}
	c.own = newOwnership(cfg.Lease)
	c.wg.Add(1)
	go c.reap()
	return c, nil
}

// Close stops every job goroutine; running jobs are abandoned (their
// tasks stay on the queue).
func (c *Coordinator) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

func (c *Coordinator) reap() {
	defer c.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			for id, j := range c.jobs {
				if e := j.endedAt(); !e.IsZero() && now.Sub(e) > c.cfg.Retention {
					delete(c.jobs, id)
				}
			}
			c.mu.Unlock()
			c.reapLedger(now)
		}
	}
}

// NewJobID returns a new sortable job id.
func NewJobID() string {
	var b [13]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return "j" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Submit validates spec, records it and starts the job. It returns the
// job id once the job's event subscription is in place (tasks are
// published in the background).
//
// The coordinator stamps the job with its own clock (spec.Accepted, and
// spec.Deadline for a job with a timeout): the submitter's SubmittedAt
// decides nothing. The spec is recorded on the job log before anything
// else of the job, and its position there (JobStatus.From) is where every
// reader of the job's records starts: the job's own event subscription,
// its reducers' feeds, a client waiting for the end.
func (c *Coordinator) Submit(ctx context.Context, spec *wire.JobSpec) (string, error) {
	return c.submit(ctx, spec, false)
}

// submit is Submit; once is SubmitOnce's (trigger.go).
func (c *Coordinator) submit(ctx context.Context, spec *wire.JobSpec, once bool) (string, error) {
	if err := Validate(spec); err != nil {
		return "", err
	}
	if spec.ID == "" {
		spec.ID = NewJobID()
	} else if !validPool(spec.ID) {
		return "", fmt.Errorf("%w: id %q: letters, digits, - and _ only", ErrInvalid, spec.ID)
	} else if c.knows(spec.ID) {
		if once {
			return spec.ID, ErrJobExists
		}
		return "", fmt.Errorf("%w: a job with id %s exists", ErrInvalid, spec.ID)
	}
	if spec.Pool == "" {
		spec.Pool = c.cfg.Pool
	}
	// The job is this coordinator's even while its lease has lapsed (a
	// busy or slow moment): it acts on the job once the lease holds again,
	// or another coordinator takes it over.
	spec.Owner = c.own.id
	now := time.Now()
	spec.Accepted, spec.Deadline = now.UnixNano(), 0
	if spec.TimeoutMS > 0 {
		spec.Deadline = now.Add(time.Duration(spec.TimeoutMS) * time.Millisecond).UnixNano()
	}
	if spec.SubmittedAt == 0 {
		spec.SubmittedAt = spec.Accepted
	}
	j, err := newJob(ctx, c, spec)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if _, dup := c.jobs[spec.ID]; dup {
		c.mu.Unlock()
		return "", fmt.Errorf("%w: a job with id %s exists", ErrInvalid, spec.ID)
	}
	c.jobs[spec.ID] = j
	c.mu.Unlock()
	drop := func() {
		c.mu.Lock()
		delete(c.jobs, spec.ID)
		c.mu.Unlock()
		j.cancel()
	}

	// The job log lets a restarted coordinator find running jobs; the
	// spec's position is where the job's records start.
	read := c.logAt()
	data, err := wire.Encode(wire.KindJob, spec)
	if err == nil {
		m := bus.Message{Data: data, ID: spec.ID + "-spec"}
		c.sign(&m)
		j.from, err = c.bus.PublishSeq(ctx, wire.JobSpecSubject(spec.ID), m)
	}
	if err != nil {
		drop()
		c.abandon(spec.ID, err)
		return "", fmt.Errorf("recording the job spec on the job log: %w", err)
	}
	if once {
		if err := c.firstSpec(ctx, spec.ID, j.from, read); err != nil {
			drop()
			return spec.ID, err
		}
	}
	if err := j.start(); err != nil {
		if j.abandoned.Load() {
			// Dropped as it started (the lease lapsed): the job is on the
			// log and is taken up again from there.
			c.log.Info("job submitted; taken up again once the lease holds", "job", spec.ID, "from", j.from)
			return spec.ID, nil
		}
		drop()
		c.abandon(spec.ID, err)
		return "", err
	}
	c.log.Info("job submitted", "job", spec.ID, "kind", spec.Kind, "function", spec.Function, "tasks", j.n, "from", j.from)
	return spec.ID, nil
}

// abandon records an end for a job whose spec may have reached the job
// log although its position could not be learned (a connection lost
// while reading it back): the submitter was told it failed, so no
// coordinator may take it up after a restart.
func (c *Coordinator) abandon(id string, cause error) {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	st := wire.JobStatus{ID: id, State: wire.StateFailed, Ended: time.Now().UnixNano(),
		Error: &wire.TaskError{Kind: wire.ErrInternal, Message: "the job spec could not be recorded: " + cause.Error()}}
	data, err := wire.Encode(wire.KindEnd, wire.End{Status: st})
	if err == nil {
		m := bus.Message{Data: data, ID: id + "-end"}
		c.sign(&m)
		err = c.bus.Publish(ctx, wire.JobEndSubject(id), m)
	}
	if err != nil {
		c.log.Debug("recording the end of a job whose spec was not recorded", "job", id, "err", err)
	}
}

// job returns a job this coordinator holds. A running job held without
// the lease (the coordinator is just back from a pause, and another may
// own the job now) is dropped here rather than answered from a stale
// memory.
func (c *Coordinator) job(id string) (*job, error) {
	c.mu.Lock()
	j, ok := c.jobs[id]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (finished jobs are kept for %v)", ErrUnknownJob, id, c.cfg.Retention)
	}
	if j.owned() && !j.snapshot().State.Terminal() && !c.leaseHeld() {
		c.drop(j, "the coordinator's lease ran out (it was paused or lost the broker)")
		return nil, fmt.Errorf("%w %q: this coordinator no longer holds it", ErrUnknownJob, id)
	}
	return j, nil
}

// Status returns a job's current status.
func (c *Coordinator) Status(id string) (wire.JobStatus, error) {
	j, err := c.job(id)
	if err != nil {
		return wire.JobStatus{}, err
	}
	return j.reported(), nil
}

// Wait blocks until the job ends or ctx is done.
func (c *Coordinator) Wait(ctx context.Context, id string) (wire.JobStatus, error) {
	j, err := c.job(id)
	if err != nil {
		return wire.JobStatus{}, err
	}
	select {
	case <-j.done:
		return j.snapshot(), nil
	case <-ctx.Done():
		return j.snapshot(), ctx.Err()
	}
}

// Results returns a page of a finished job's results: for map jobs the
// results from offset (at most limit, 0 = all), in iterdata order; for
// call and mapreduce jobs the single result.
func (c *Coordinator) Results(id string, offset, limit, maxBytes int) (wire.Response, error) {
	j, err := c.job(id)
	if err != nil {
		return wire.Response{}, err
	}
	return j.page(offset, limit, maxBytes)
}

// Cancel stops a job: queued tasks are purged, running ones are told to
// stop, and the job ends as cancelled.
func (c *Coordinator) Cancel(ctx context.Context, id string) (wire.JobStatus, error) {
	j, err := c.job(id)
	if err != nil {
		return wire.JobStatus{}, err
	}
	j.requestEnd(wire.StateCancelled, &wire.TaskError{Kind: wire.ErrCancelled, Message: "cancelled on request"}, -1)
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.snapshot(), nil
}
