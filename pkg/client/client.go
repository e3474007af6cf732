package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// Client talks to a coordinator over a bus. It is safe for concurrent use.
type Client struct {
	b bus.Bus
	// Resolve loads results a runtime stored by reference; nil leaves
	// them as {"$skein_ref": "…"} objects.
	Resolve func(ctx context.Context, ref string) (wire.Value, error)
	// StoreInput, when set, stores a job's large input (StreamInput) as
	// an artifact of the job, reading r to its end, and returns its URL;
	// nil records large inputs in chunks on the job log instead.
	StoreInput func(ctx context.Context, job string, r io.Reader) (string, error)
	// LivenessInterval is how often a wait checks that the coordinator
	// still holds the job. Default 5s.
	LivenessInterval time.Duration
	// CoordinatorGrace is how long a wait goes on, from the first check
	// that found no coordinator for its job, while every check finds none,
	// before it fails with ErrCoordinatorLost; when set, it is also how
	// long a request (a submit, a result) goes on asking while no
	// coordinator serves, before it fails with ErrNoCoordinator. A coordinator that
	// restarts, or that reconnects after the broker's restart, answers
	// again within seconds, and takes the job up. A check that finds
	// nobody has itself asked for about 5 s, so checks a liveness
	// interval apart find nobody about that far apart. Default half of
	// LivenessInterval (2.5s): two misses a second apart (a check that
	// waited for the client's own reconnect, then the tick queued
	// meanwhile) are not enough; two a whole interval apart are. A check
	// made while the client has lost its bus counts nothing and starts
	// the count afresh (a bus that tells: Connected).
	CoordinatorGrace time.Duration
	// Logger receives what the client ignores (a malformed record on a
	// job's end subject); nil discards it.
	Logger *slog.Logger
	// Verifier, when set, admits only end records the coordinator signed
	// (submit --verify-key); others are logged and ignored.
	Verifier interface{ Verify(bus.Message) error }
	// RequestTimeout bounds one attempt of an API request. A coordinator
	// that took a request and then died, or was paused, never answers it;
	// the request is then sent again, to whichever coordinator serves (a
	// submit as a retry of the same job id, which a coordinator that has
	// the job answers with its status). Default 15s.
	RequestTimeout time.Duration
	// HedgeAfter is how long a request waits for its answer before a copy
	// is sent beside it, and then another each quarter of HedgeAfter (32
	// at most) within RequestTimeout; the first answer wins. A
	// coordinator that is stopped or cut off behind a connection the
	// broker still holds open keeps taking its share of the requests, and
	// a copy reaches a live one. Every request is safe to send twice: a
	// submit's copies are retries of the same job id, and status, result
	// and cancel change nothing the second time. Default 1s; negative
	// sends no copies.
	HedgeAfter time.Duration
}

// New returns a client on b.
func New(b bus.Bus) *Client { return &Client{b: b} }

// Bus returns the client's bus.
func (c *Client) Bus() bus.Bus { return c.b }

// ErrNoCoordinator is returned when no coordinator answers on the bus.
var ErrNoCoordinator = errors.New("no coordinator is serving on this bus")

// ErrUnknownJob is returned for a job id the coordinator does not hold
// (never submitted, or finished longer ago than its retention).
var ErrUnknownJob = errors.New("unknown job")

// InvalidError is a job spec the coordinator refused.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// JobError is a job that ended other than done.
type JobError struct{ Status wire.JobStatus }

func (e *JobError) Error() string {
	switch e.Status.State {
	case wire.StateTimedOut:
		return fmt.Sprintf("job %s timed out: %s", e.Status.ID, e.Status.Error.Message)
	case wire.StateCancelled:
		return fmt.Sprintf("job %s was cancelled", e.Status.ID)
	}
	switch {
	case e.Status.Error != nil && e.Status.FailedTask < 0:
		return fmt.Sprintf("job %s failed: %s", e.Status.ID, e.Status.Error.Error())
	case e.Status.Error != nil:
		return fmt.Sprintf("job %s failed: task %d: %s", e.Status.ID, e.Status.FailedTask, e.Status.Error.Error())
	}
	return fmt.Sprintf("job %s ended %s", e.Status.ID, e.Status.State)
}

func (c *Client) call(ctx context.Context, subject string, req *wire.Request) (*wire.Response, error) {
	data, err := wire.Encode(wire.KindReq, req)
	if err != nil {
		return nil, err
	}
	// A submit sent again is marked as a retry of the same job id, and
	// takes a Held answer: the coordinator still taking an earlier copy
	// answers the later ones at once.
	again := data
	var held func([]byte) bool
	if req.Spec != nil {
		r := *req
		r.Retry, r.AcceptHeld = true, true
		if again, err = wire.Encode(wire.KindReq, &r); err != nil {
			return nil, err
		}
		held = isHeld
	}
	out, err := c.request(ctx, subject, req.Job, data, again, held)
	if err != nil {
		var re *bus.RemoteError
		if errors.As(err, &re) && strings.HasPrefix(re.Msg, "invalid job") {
			return nil, &InvalidError{Msg: re.Msg}
		}
		if errors.As(err, &re) && strings.HasPrefix(re.Msg, "unknown job") {
			return nil, fmt.Errorf("%w%s", ErrUnknownJob, strings.TrimPrefix(re.Msg, "unknown job"))
		}
		return nil, err
	}
	var resp wire.Response
	if err := wire.Decode(out, wire.KindResp, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Request sends data to a coordinator on subject and returns its answer,
// as the client's own requests go: asked again while no coordinator
// serves (a few seconds, or CoordinatorGrace), a copy sent beside it
// after HedgeAfter, and sent again after RequestTimeout. For requests to
// the coordinators that are safe to send twice (the trigger API). A
// handler's error is a *bus.RemoteError; no coordinator serving is
// ErrNoCoordinator.
func (c *Client) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	return c.request(ctx, subject, "", data, data, nil)
}

// isHeld reports whether a submit's answer is Response.Held.
func isHeld(out []byte) bool {
	var resp wire.Response
	return wire.Decode(out, wire.KindResp, &resp) == nil && resp.Held
}

// request is Request, with the copies and later attempts sending again
// (a submit's marked as a retry); job names the request in the log. An
// answer that held (non-nil) says is not the answer: the request is
// being taken by a coordinator, which answers another copy.
func (c *Client) request(ctx context.Context, subject, job string, data, again []byte, held func([]byte) bool) ([]byte, error) {
	timeout := c.RequestTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	// A coordinator that is starting or restarting: retry while nobody
	// answers, for a few seconds (seven tries), or for CoordinatorGrace
	// when it is set: a submit whose coordinator died after taking the
	// job, before its answer, is answered by the next coordinator to
	// start (the job is on the job log; the request is sent again as a
	// retry of the same job id).
	grace := c.CoordinatorGrace
	policy := retry.Policy{Initial: 50 * time.Millisecond, Max: time.Second, Tries: 7}
	if grace > 0 {
		policy.Tries = 0
	}
	var (
		mu          sync.Mutex
		nobodySince time.Time // guarded by mu: the copies of a request run at once
	)
	nobody := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		if nobodySince.IsZero() {
			nobodySince = time.Now()
		}
		return nobodySince
	}
	send := func(actx context.Context, data []byte) ([]byte, error) {
		return retry.Value(actx, policy, func() ([]byte, error) {
			out, err := c.b.Request(actx, subject, data)
			switch {
			case errors.Is(err, bus.ErrNoResponders):
				if grace > 0 && time.Since(nobody()) >= grace {
					return nil, retry.Permanent(err)
				}
				return nil, err
			case err != nil:
				return nil, retry.Permanent(err)
			}
			return out, nil
		})
	}
	var (
		out []byte
		err error
	)
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		out, err = c.hedged(actx, subject, job, data, again, held, send)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if !timedOut {
			break
		}
		if nobodySeen(&mu, &nobodySince).IsZero() {
			c.log().Warn("no answer from the coordinator that took the request; sending it again", "subject", subject, "job", job, "timeout", timeout)
		}
		data = again
	}
	if err != nil && !nobodySeen(&mu, &nobodySince).IsZero() && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, bus.ErrNoResponders) {
		// ctx ran out while nobody served: still no coordinator (a wait's
		// liveness check counts it as such).
		err = bus.ErrNoResponders
	}
	if errors.Is(err, bus.ErrNoResponders) {
		return nil, fmt.Errorf("%w (start one with `coordinator --bus …`)", ErrNoCoordinator)
	}
	return out, err
}

// nobodySeen reads *since under mu: when a request's copies first found
// no coordinator serving (zero: never).
func nobodySeen(mu *sync.Mutex, since *time.Time) time.Time {
	mu.Lock()
	defer mu.Unlock()
	return *since
}

// hedged runs send(ctx, data) and, while no copy has come back, sends a
// copy of the request (again) beside it after HedgeAfter, and then each
// HedgeAfter/hedgeFaster, up to maxCopies. It returns what the first
// copy to come back brought, answer or error, once the others have ended
// (no copy outlives the call). The intervals never grow: where one of
// two coordinators is stuck, each copy reaches it by chance (NATS picks a
// queue member at random), and doubling intervals turned four unlucky
// copies into 13 s.
//
// An answer that held (non-nil) says is a live coordinator taking the
// request from an earlier copy: no more copies are sent while the others
// are out (one of them gets the answer), and one more after HedgeAfter
// when none is (the earlier copy was of a call that timed out).
func (c *Client) hedged(ctx context.Context, subject, job string, data, again []byte, held func([]byte) bool,
	send func(context.Context, []byte) ([]byte, error)) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	const maxCopies = 32
	results := make(chan result, maxCopies) // a copy that comes back late never blocks
	ctx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() { stop(); running.Wait() }()
	copies, pending := 0, 0
	start := func(data []byte) {
		copies++
		pending++
		running.Go(func() {
			out, err := send(ctx, data)
			results <- result{out, err}
		})
	}
	start(data)
	wait := c.HedgeAfter
	if wait == 0 {
		wait = time.Second
	}
	var hedge <-chan time.Time // nil: no (more) copies
	var t *time.Timer
	if wait > 0 {
		t = time.NewTimer(wait)
		defer t.Stop()
		hedge = t.C
	}
	for {
		select {
		case r := <-results:
			pending--
			if held != nil && r.err == nil && held(r.out) {
				hedge = nil
				if t != nil {
					t.Stop()
				}
				if pending == 0 {
					if t == nil || copies == maxCopies {
						// Nothing out and no copy left to send: the
						// caller sends the request again when ctx ends.
						<-ctx.Done()
						return nil, ctx.Err()
					}
					t.Reset(wait)
					hedge = t.C
				}
				continue
			}
			if copies > 1 {
				c.log().Info("a request went unanswered for a while; copies were sent beside it", "subject", subject, "job", job, "copies", copies)
			}
			return r.out, r.err
		case <-hedge:
			start(again)
			if copies == maxCopies {
				hedge = nil
				continue
			}
			t.Reset(max(wait/hedgeFaster, time.Millisecond))
		}
	}
}

// hedgeFaster is how much sooner than the first copy of a request each
// further copy is sent: a request unanswered for HedgeAfter most likely
// met a stuck coordinator, and each copy may meet it again (a NATS
// queue group picks a member at random), so the chance that every copy
// so far met it should fall fast. With one of two coordinators stuck
// (and HedgeAfter 1 s), a request goes unanswered for 2 s once in 32
// times, not once in 4, and for 3 s once in 512, not once in 8.
const hedgeFaster = 4

// Submit sends spec to the coordinator and returns the job id.
func (c *Client) Submit(ctx context.Context, spec *wire.JobSpec) (string, error) {
	st, err := c.submit(ctx, spec)
	return st.ID, err
}

// SubmitStatus is Submit returning the job's first status (its id in
// ID). WaitFrom and WatchFrom follow the job from it without asking the
// coordinator for the job's status again: a round trip less on the path
// of every job.
func (c *Client) SubmitStatus(ctx context.Context, spec *wire.JobSpec) (wire.JobStatus, error) {
	return c.submit(ctx, spec)
}

// submit sends spec and returns the job's first status, which carries the
// stream position of the job's records (JobStatus.From).
func (c *Client) submit(ctx context.Context, spec *wire.JobSpec) (wire.JobStatus, error) {
	if spec.SubmittedAt == 0 {
		spec.SubmittedAt = time.Now().UnixNano()
	}
	if spec.ID == "" {
		// The job's id is fixed before it is sent, so that a submit sent
		// again after an attempt got no answer names the same job.
		spec.ID = coordinator.NewJobID()
	}
	resp, err := c.call(ctx, wire.APISubmit, &wire.Request{Spec: spec})
	if err != nil {
		return wire.JobStatus{}, err
	}
	if resp.Status == nil {
		return wire.JobStatus{}, errors.New("coordinator answered submit without a status")
	}
	return *resp.Status, nil
}

// Status returns the job's status.
func (c *Client) Status(ctx context.Context, id string) (wire.JobStatus, error) {
	resp, err := c.call(ctx, wire.APIStatus, &wire.Request{Job: id})
	if err != nil {
		return wire.JobStatus{}, err
	}
	return *resp.Status, nil
}

// Cancel cancels the job and returns its final status.
func (c *Client) Cancel(ctx context.Context, id string) (wire.JobStatus, error) {
	resp, err := c.call(ctx, wire.APICancel, &wire.Request{Job: id})
	if err != nil {
		return wire.JobStatus{}, err
	}
	return *resp.Status, nil
}

// Wait blocks until the job ends, on the job's end record (an event, not
// a poll), and returns its final status.
func (c *Client) Wait(ctx context.Context, id string) (wire.JobStatus, error) {
	st, err := c.Status(ctx, id)
	if err != nil {
		return st, err
	}
	if st.State.Terminal() {
		return st, nil
	}
	end, _, err := c.waitEnd(ctx, st)
	return end, err
}

// WaitFrom is Wait for a job whose status SubmitStatus returned (or any
// status of the job carrying its stream position, From).
func (c *Client) WaitFrom(ctx context.Context, st wire.JobStatus) (wire.JobStatus, error) {
	if st.State.Terminal() {
		return st, nil
	}
	end, _, err := c.waitEnd(ctx, st)
	return end, err
}

// waitEnd reads the job's end record from the job's position on the
// stream (st.From, which the coordinator reported) and returns it with its
// position. Only a well-formed end record of this job with a final state
// decides; anything else on the subject is logged and ignored. A job the
// coordinator reports ended at two checks in a row while no end record
// came is returned as the coordinator reports it, at position 0.
func (c *Client) waitEnd(ctx context.Context, st wire.JobStatus) (wire.JobStatus, uint64, error) {
	id := st.ID
	if st.From == 0 {
		return wire.JobStatus{}, 0, fmt.Errorf("job %s: the coordinator did not report the job's stream position (it is older than this client)", id)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.subscribe(ctx, wire.JobEndSubject(id), bus.SubscribeOptions{From: st.From})
	if err != nil {
		return wire.JobStatus{}, 0, err
	}
	// While waiting, check now and then that a coordinator still holds
	// the job, so that a coordinator that died is a clear error, not a hang.
	check := time.NewTicker(c.liveness())
	defer check.Stop()
	var (
		misses    int
		firstMiss time.Time // when the first check of the present streak of misses found nobody
		ended     bool      // the last check found the job ended, its end record not read
	)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return wire.JobStatus{}, 0, ctx.Err()
				}
				return wire.JobStatus{}, 0, fmt.Errorf("job %s: the bus closed the subscription to the job's end", id)
			}
			if c.Verifier != nil {
				if err := c.Verifier.Verify(m); err != nil {
					c.log().Warn("ignoring an end record the coordinator did not sign", "job", id, "seq", m.Seq, "err", err)
					continue
				}
			}
			end, err := wire.DecodeEnd(m.Data, id)
			if err != nil {
				c.log().Warn("ignoring a record on the job's end subject that is not its end", "job", id, "seq", m.Seq, "err", err)
				continue
			}
			return end, m.Seq, nil
		case <-check.C:
			// Absence counts only while this client has the bus: while it
			// is away nobody can answer, and after it is back the
			// coordinator may still be reconnecting, or being replaced.
			if !c.connected() {
				misses = 0
				continue
			}
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			now, err := c.Status(sctx, id)
			scancel()
			if err != nil && !errors.Is(err, ErrUnknownJob) && ctx.Err() == nil && !c.connected() {
				misses = 0
				continue
			}
			switch {
			case err == nil && now.State.Terminal() && ended:
				// Ended a check ago and its end record still not read:
				// the record went where this subscription does not
				// look (a RabbitMQ broker back without its data starts
				// its stream's offsets anew, and a subscription that
				// reconnected after the record was written resumes
				// past it). The coordinator's word decides; position
				// 0: the end record was not read.
				c.log().Warn("the job ended but its end record did not come; taking the coordinator's status", "job", id, "state", now.State)
				return now, 0, nil
			case err == nil:
				misses, ended = 0, now.State.Terminal()
			case ctx.Err() != nil:
				return wire.JobStatus{}, 0, ctx.Err()
			case errors.Is(err, ErrNoCoordinator):
				// Lost only when nobody has answered for the grace,
				// counted from the first miss: two misses can come a
				// second apart (a check that waited for the bus to come
				// back, and the tick that queued meanwhile), while the
				// coordinator is still reconnecting.
				if misses++; misses == 1 {
					firstMiss = time.Now()
				}
				if misses >= 2 && time.Since(firstMiss) >= c.grace() {
					return wire.JobStatus{}, 0, fmt.Errorf("job %s: %w: no coordinator has answered for the job for %s; its outcome is unknown (resubmit it)", id, ErrCoordinatorLost, time.Since(firstMiss).Round(time.Second))
				}
			case errors.Is(err, ErrUnknownJob):
				return wire.JobStatus{}, 0, fmt.Errorf("job %s: %w: the coordinators no longer know the job (they restarted, or the broker lost its data); resubmit it", id, ErrCoordinatorLost)
			}
		}
	}
}

func (c *Client) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ErrCoordinatorLost is returned by waits whose coordinator went away.
var ErrCoordinatorLost = errors.New("coordinator lost")

// connected reports whether the client has its bus (true for a bus that
// does not tell).
func (c *Client) connected() bool {
	cs, ok := c.b.(interface{ Connected() bool })
	return !ok || cs.Connected()
}

func (c *Client) grace() time.Duration {
	if c.CoordinatorGrace > 0 {
		return c.CoordinatorGrace
	}
	return c.liveness() / 2
}

func (c *Client) liveness() time.Duration {
	if c.LivenessInterval > 0 {
		return c.LivenessInterval
	}
	return 5 * time.Second
}

// Result fetches a finished job's result as JSON: a list in iterdata order
// for map jobs (and for mapreduce with one reducer per object), the single
// value otherwise. A job that did not end done gives a *JobError. The
// list is written as its pages arrive (a million results cost their JSON,
// not a million decoded values).
func (c *Client) Result(ctx context.Context, id string) (json.RawMessage, error) {
	var (
		buf   bytes.Buffer
		n     int
		total = -1
		list  bool
	)
	for total < 0 || n < total {
		resp, err := c.call(ctx, wire.APIResult, &wire.Request{Job: id, Offset: n})
		if err != nil {
			return nil, err
		}
		st := resp.Status
		if st == nil || st.State != wire.StateDone {
			if st != nil && st.State.Terminal() {
				return nil, &JobError{Status: *st}
			}
			return nil, fmt.Errorf("job %s has not finished (state %s)", id, stateOf(st))
		}
		if total < 0 {
			total, list = resp.Total, resp.List
			if !list {
				total = min(total, 1)
			}
			buf.WriteByte('[')
		}
		if len(resp.Results) == 0 && n < total {
			return nil, fmt.Errorf("job %s: result page at %d is empty", id, n)
		}
		for _, v := range resp.Results {
			nv, err := c.resolve(ctx, v)
			if err != nil {
				return nil, fmt.Errorf("job %s: result %d: %w", id, n, err)
			}
			if n > 0 {
				buf.WriteByte(',')
			}
			buf.Write(nullIfEmpty(nv))
			n++
		}
	}
	if !list {
		if n == 0 {
			return json.RawMessage("null"), nil
		}
		return buf.Bytes()[1:], nil
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

func stateOf(st *wire.JobStatus) wire.JobState {
	if st == nil {
		return "unknown"
	}
	return st.State
}

func nullIfEmpty(v wire.Value) wire.Value {
	if len(v) == 0 {
		return wire.Value("null")
	}
	return v
}

const refPrefix = `{"$skein_ref":`

func (c *Client) resolve(ctx context.Context, v wire.Value) (wire.Value, error) {
	if !bytes.HasPrefix(v, []byte(refPrefix)) || c.Resolve == nil {
		return v, nil
	}
	var r struct {
		Ref string `json:"$skein_ref"`
	}
	if err := json.Unmarshal(v, &r); err != nil || r.Ref == "" {
		return v, nil
	}
	return c.Resolve(ctx, r.Ref)
}

// Run submits spec, waits for the end and fetches the result.
func (c *Client) Run(ctx context.Context, spec *wire.JobSpec) (json.RawMessage, wire.JobStatus, error) {
	sub, err := c.submit(ctx, spec)
	if err != nil {
		return nil, wire.JobStatus{}, err
	}
	id := sub.ID
	st, _, err := c.waitEnd(ctx, sub)
	if err != nil {
		return nil, st, err
	}
	if st.State != wire.StateDone {
		return nil, st, &JobError{Status: st}
	}
	res, err := c.Result(ctx, id)
	return res, st, err
}

// A Watcher follows one job's progress. C carries the job's statuses:
// the one the watch started from, then its progress notices, and last
// its final status, unless the watch ended first; Err then says why.
type Watcher struct {
	// C is closed when the job has ended, or the watch has.
	C <-chan wire.JobStatus

	mu  sync.Mutex
	err error
}

// Err is nil while C is open and once C has carried the job's final
// status. After C closes without it, Err says why: ctx's error, or the
// wait's (ErrCoordinatorLost when no coordinator holds the job any more,
// a check the caller need not make again).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Watcher) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// Watch follows a job's progress notices until it ends or ctx is done.
func (c *Client) Watch(ctx context.Context, id string) (*Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	notes, err := c.b.Listen(ctx, wire.ProgressSubject(id))
	if err != nil {
		cancel()
		return nil, err
	}
	st, err := c.Status(ctx, id)
	if err != nil {
		cancel()
		return nil, err
	}
	return c.watch(ctx, cancel, notes, st), nil
}

// WatchFrom is Watch for a job whose status SubmitStatus returned: that
// status is the first one sent. The notices sent before WatchFrom
// listens are missed; each notice is a whole status, so the next one
// makes up for them, and the end is read from the stream.
func (c *Client) WatchFrom(ctx context.Context, st wire.JobStatus) (*Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	notes, err := c.b.Listen(ctx, wire.ProgressSubject(st.ID))
	if err != nil {
		cancel()
		return nil, err
	}
	return c.watch(ctx, cancel, notes, st), nil
}

// watch sends st, then the progress notices of notes, until the job's end
// (read from st.From) is sent or the wait for it fails or ctx ends; it
// calls cancel when done. Notices are a courtesy: when their
// subscription closes, the watch goes on waiting for the end.
func (c *Client) watch(ctx context.Context, cancel context.CancelFunc, notes <-chan bus.Message, st wire.JobStatus) *Watcher {
	out := make(chan wire.JobStatus, 16)
	w := &Watcher{C: out}
	go func() {
		defer cancel()
		defer close(out)
		out <- st
		if st.State.Terminal() {
			return
		}
		type end struct {
			st  wire.JobStatus
			err error
		}
		endc := make(chan end, 1)
		go func() {
			s, _, err := c.waitEnd(ctx, st)
			endc <- end{s, err}
		}()
		for {
			select {
			case m, ok := <-notes:
				if !ok {
					notes = nil
					continue
				}
				var resp wire.Response
				if wire.Decode(m.Data, wire.KindResp, &resp) != nil || resp.Status == nil {
					continue
				}
				select {
				case out <- *resp.Status:
				default:
				}
			case e := <-endc:
				if e.err != nil {
					w.fail(e.err)
					return
				}
				out <- e.st
				return
			case <-ctx.Done():
				w.fail(ctx.Err())
				return
			}
		}
	}()
	return w
}

// Events replays every event of a job recorded on the bus (for plots and
// post-mortems): it waits for the job's end record, then reads the job's
// events from the job's position to the end record's.
func (c *Client) Events(ctx context.Context, id string) ([]wire.Event, wire.JobStatus, error) {
	st, err := c.Status(ctx, id)
	if err != nil {
		return nil, st, err
	}
	st, end, err := c.waitEnd(ctx, st)
	if err != nil {
		return nil, st, err
	}
	if end == 0 {
		return nil, st, fmt.Errorf("job %s: its end record is not on the bus (the broker lost its data?): its events cannot be read", id)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.subscribe(ctx, wire.TaskEvents(id), bus.SubscribeOptions{From: st.From, To: end})
	if err != nil {
		return nil, st, err
	}
	var evs []wire.Event
	for m := range ch {
		if batch, err := coordinator.DecodeEvents(m.Data); err == nil {
			evs = append(evs, batch...)
		}
	}
	return evs, st, ctx.Err()
}

// subscribe subscribes to subject, retrying a few times: a broker that
// has just created its event stream may refuse the first replay.
func (c *Client) subscribe(ctx context.Context, subject string, opts bus.SubscribeOptions) (<-chan bus.Message, error) {
	return retry.Value(ctx, retry.Policy{Initial: 200 * time.Millisecond, Tries: 4}, func() (<-chan bus.Message, error) {
		return c.b.Subscribe(ctx, subject, opts)
	})
}
