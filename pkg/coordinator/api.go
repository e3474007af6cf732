package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Serve answers the coordinator API on the bus until ctx is done: the
// namespace's API subjects, which every coordinator of the namespace
// serves (each request goes to one of them), and this coordinator's
// direct subjects (wire.APIAt), on which it answers for the jobs it holds
// when another coordinator forwards a request.
func (c *Coordinator) Serve(ctx context.Context) error {
	maxBytes := 1 << 20
	if l, ok := c.bus.(bus.Limits); ok {
		maxBytes = l.MaxMessageSize()
	}
	handle := func(f func(ctx context.Context, req *wire.Request) (wire.Response, error)) bus.Handler {
		return func(ctx context.Context, m bus.Message) ([]byte, error) {
			var req wire.Request
			if err := wire.Decode(m.Data, wire.KindReq, &req); err != nil {
				return nil, err
			}
			resp, err := f(ctx, &req)
			if err != nil {
				return nil, err
			}
			return wire.Encode(wire.KindResp, resp)
		}
	}
	routes := map[string]bus.Handler{
		wire.APISubmit: handle(func(ctx context.Context, req *wire.Request) (wire.Response, error) {
			return c.answerSubmit(ctx, req, maxBytes*3/4)
		}),
	}
	routes[wire.APIInput] = handle(c.recordInput)
	for _, op := range []string{wire.APIStatus, wire.APIResult, wire.APICancel} {
		routes[op] = handle(func(ctx context.Context, req *wire.Request) (wire.Response, error) {
			return c.answer(ctx, op, req, maxBytes*3/4)
		})
		routes[wire.APIAt(op, c.own.id)] = handle(func(ctx context.Context, req *wire.Request) (wire.Response, error) {
			j, err := c.job(req.Job)
			if err != nil {
				return wire.Response{}, err
			}
			return c.answerLocal(ctx, op, j, req, maxBytes*3/4)
		})
	}
	for subj, h := range routes {
		if err := c.bus.Serve(ctx, subj, h); err != nil {
			return err
		}
	}
	return nil
}

// answerSubmit answers a submit request: it starts the job and answers
// with its status. A client sends a request again, or a copy of it beside
// the first, when no answer came (client.HedgeAfter, RequestTimeout), as
// a retry of the same job id; so two coordinators can get the same job at
// once, or one get it again. One that has joined its namespace reads the
// job log before starting a retry's job (the first attempt may be there),
// and for every submit the first spec record of the id on the job log
// wins (as for SubmitOnce): the others drop their copy, and each answers
// with the status of the one job.
func (c *Coordinator) answerSubmit(ctx context.Context, req *wire.Request, maxBytes int) (wire.Response, error) {
	if req.Spec == nil {
		return wire.Response{}, fmt.Errorf("%w: submit without a job spec", ErrInvalid)
	}
	if id := req.Spec.ID; id != "" {
		// A copy of a submit still being taken here (the client sends
		// one beside an attempt slow to be answered) waits for it, and
		// then finds the job: answered half-registered, it would get no
		// stream position, or "a job with this id exists".
		release, err := c.holdSubmit(ctx, id, req.AcceptHeld)
		if errors.Is(err, errHeld) {
			return wire.Response{Held: true}, nil
		}
		if err != nil {
			return wire.Response{}, err
		}
		defer release()
		if req.Retry {
			// The first attempt may have reached another coordinator:
			// read the job log to its end, and answer with the job's
			// status if it did.
			if err := c.syncLedger(ctx); err != nil {
				return wire.Response{}, err
			}
		}
		if c.knows(id) {
			release()
			return c.answer(ctx, wire.APIStatus, &wire.Request{Job: id}, maxBytes)
		}
	}
	id, err := c.submit(ctx, req.Spec, req.Spec.ID != "")
	if err != nil && !errors.Is(err, ErrJobExists) {
		return wire.Response{}, err
	}
	return c.answer(ctx, wire.APIStatus, &wire.Request{Job: id}, maxBytes)
}

// errHeld is holdSubmit's answer to a copy that need not wait.
var errHeld = errors.New("a submit of the job id is being taken here")

// holdSubmit waits until no other submit of id is being taken by this
// coordinator, and marks id as taken until release (which may be called
// more than once). With noWait, a submit of id being taken returns
// errHeld at once.
func (c *Coordinator) holdSubmit(ctx context.Context, id string, noWait bool) (release func(), err error) {
	for {
		c.mu.Lock()
		busy, ok := c.submitting[id]
		if !ok {
			done := make(chan struct{})
			c.submitting[id] = done
			c.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					c.mu.Lock()
					delete(c.submitting, id)
					c.mu.Unlock()
					close(done)
				})
			}, nil
		}
		c.mu.Unlock()
		if noWait {
			return nil, errHeld
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// answer answers op (status, result or cancel) for req.Job: from memory
// when this coordinator holds the job; else by forwarding the request to
// the job's owner; else from the job log (a finished job's end record,
// its results replayed from the stream; a running job whose owner is
// being replaced is reported running, so that waiting clients wait).
func (c *Coordinator) answer(ctx context.Context, op string, req *wire.Request, maxBytes int) (wire.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*c.cfg.Lease+30*time.Second)
	defer cancel()
	synced := false
	for {
		if j, err := c.job(req.Job); err == nil {
			return c.answerLocal(ctx, op, j, req, maxBytes)
		}
		e, node, ok := c.ledgerEntry(req.Job)
		if !ok && c.joined() && !synced {
			// Submitted through another coordinator a moment ago?
			synced = true
			if err := c.syncLedger(ctx); err != nil {
				return wire.Response{}, err
			}
			continue
		}
		if !ok {
			_, err := c.job(req.Job)
			return wire.Response{}, err
		}
		if node != "" {
			resp, err := c.forward(ctx, op, node, req)
			var re *bus.RemoteError
			if err == nil || (errors.As(err, &re) && !strings.HasPrefix(re.Msg, ErrUnknownJob.Error())) {
				return resp, err // the owner's answer
			}
			c.log.Debug("forwarding a request to the job's owner", "job", req.Job, "op", op, "owner", e.owner, "err", err)
		}
		if !synced {
			// Answer from the log only once it is read to its present
			// end: the requester may have seen the job's end already.
			synced = true
			if err := c.syncLedger(ctx); err != nil {
				return wire.Response{}, err
			}
			continue
		}
		switch {
		case e.end != nil && op == wire.APIResult && e.end.State == wire.StateDone:
			j, err := c.replay(ctx, req.Job, e)
			if err != nil {
				return wire.Response{}, err
			}
			return c.answerLocal(ctx, op, j, req, maxBytes)
		case e.end != nil:
			st := *e.end
			st.From = e.spec
			return wire.Response{Status: &st}, nil
		case op != wire.APICancel:
			st := wire.JobStatus{ID: req.Job, State: wire.StateRunning, Kind: e.kind, From: e.spec, Owner: e.owner}
			return wire.Response{Status: &st}, nil
		}
		// A cancel waits for the job to have a live owner again.
		select {
		case <-time.After(c.own.beat):
		case <-ctx.Done():
			return wire.Response{}, fmt.Errorf("job %s: its coordinator died and no other has taken it over yet; cancel again", req.Job)
		}
	}
}

// answerLocal answers op for a job this coordinator holds (c.job: not a
// job held without the lease).
func (c *Coordinator) answerLocal(ctx context.Context, op string, j *job, req *wire.Request, maxBytes int) (wire.Response, error) {
	if err := j.rebuilt(ctx); err != nil {
		return wire.Response{}, err
	}
	switch op {
	case wire.APIResult:
		return j.page(req.Offset, req.Limit, maxBytes)
	case wire.APICancel:
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := c.Cancel(cctx, j.id)
		return wire.Response{Status: &st}, err
	}
	st := j.snapshot()
	return wire.Response{Status: &st}, nil
}

// forward sends req to the coordinator node that owns the job.
func (c *Coordinator) forward(ctx context.Context, op, node string, req *wire.Request) (wire.Response, error) {
	data, err := wire.Encode(wire.KindReq, req)
	if err != nil {
		return wire.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*c.cfg.Lease)
	defer cancel()
	out, err := c.bus.Request(ctx, wire.APIAt(op, node), data)
	if err != nil {
		return wire.Response{}, err
	}
	var resp wire.Response
	if err := wire.Decode(out, wire.KindResp, &resp); err != nil {
		return wire.Response{}, err
	}
	return resp, nil
}

// syncLedger reads the job log to its present end (a mark recorded now).
// A coordinator that has not joined a namespace (no Recover: embedded)
// keeps no ledger and reads no job log: there is nothing to read to, and
// waiting for it would wait for ever.
func (c *Coordinator) syncLedger(ctx context.Context) error {
	if !c.joined() {
		return nil
	}
	read := c.logAt()
	mark, err := c.bus.PublishSeq(ctx, wire.JobLogMarkSubject("sync-"+c.own.id), bus.Message{})
	if err != nil {
		return fmt.Errorf("marking the end of the job log: %w", err)
	}
	return c.readToWritten(ctx, mark, read, func() bool { return false }) // a mark is never a copy
}

// knows reports whether the job is held here or on the job log.
func (c *Coordinator) knows(id string) bool {
	if _, err := c.job(id); err == nil {
		return true
	}
	_, _, ok := c.ledgerEntry(id)
	return ok
}
