package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Jobs submitted for an event (pkg/trigger) carry an id derived from the
// event, and the event's source is acknowledged only once the job is
// recorded: a source that delivers the event again (the coordinator died
// before its ack, or another coordinator took the message meanwhile)
// leads to the same id, and SubmitOnce starts no second job for it.

// ErrJobExists is returned by SubmitOnce when a job with the spec's id is
// on the job log already (this coordinator's or another's).
var ErrJobExists = errors.New("a job with this id exists")

// SubmitOnce is Submit for a spec with a fixed id that must start one job
// however often, and by however many coordinators, it is submitted. It
// returns ErrJobExists (and the id) when the job log already has a spec
// of that id. Once the coordinator has joined its namespace (Recover),
// the first spec record of an id on the job log wins, as the first owner
// record of a term does: a coordinator that recorded a later one (two
// coordinators got the same event at once) reads the log to its own
// record, finds another's first, drops its copy and returns
// ErrJobExists.
func (c *Coordinator) SubmitOnce(ctx context.Context, spec *wire.JobSpec) (string, error) {
	if spec.ID == "" {
		return "", fmt.Errorf("%w: SubmitOnce needs the spec's id", ErrInvalid)
	}
	return c.submit(ctx, spec, true)
}

// firstSpec checks, for a coordinator that has joined its namespace, that
// the spec record of job id at position at is the first of its id on the
// job log and this coordinator's; before is how far the log was read
// before the record was written.
func (c *Coordinator) firstSpec(ctx context.Context, id string, at uint64, before logPoint) error {
	if !c.joined() {
		return nil
	}
	// A copy of the submit (a retry) records the spec again: the bus
	// answers with the first record's position, which the ledger has.
	known := func() bool { _, _, ok := c.ledgerEntry(id); return ok }
	if err := c.readToWritten(ctx, at, before, known); err != nil {
		return fmt.Errorf("reading the job log to the job's spec: %w", err)
	}
	e, _, ok := c.ledgerEntry(id)
	if !ok {
		return fmt.Errorf("the job log has no spec of job %s at position %d", id, at)
	}
	if e.spec != at || e.owner != c.own.id {
		return ErrJobExists
	}
	return nil
}

// SignedByUs reports whether m carries the coordinators' signature, or
// signing is off: a trigger that reads job end records checks them so.
func (c *Coordinator) SignedByUs(m bus.Message) bool { return c.signedByUs(m) }

// Sign signs m when the coordinators sign (--sign-key): the trigger
// runner's records.
func (c *Coordinator) Sign(m *bus.Message) { c.sign(m) }

// JobResult returns a finished job of the namespace's result as JSON, as
// client.Result does (a list for map jobs), answered in-process as the
// API would answer it: a trigger chained to other jobs reads their
// results so, without API rights of its own. Results stored by reference
// stay references.
func (c *Coordinator) JobResult(ctx context.Context, id string) (json.RawMessage, error) {
	maxBytes := 1 << 20
	if l, ok := c.bus.(bus.Limits); ok {
		maxBytes = l.MaxMessageSize()
	}
	var (
		buf   bytes.Buffer
		n     int
		total = -1
		list  bool
	)
	for total < 0 || n < total {
		resp, err := c.answer(ctx, wire.APIResult, &wire.Request{Job: id, Offset: n}, maxBytes*3/4)
		if err != nil {
			return nil, err
		}
		if st := resp.Status; st == nil || st.State != wire.StateDone {
			return nil, fmt.Errorf("job %s has not ended done", id)
		}
		if total < 0 {
			total, list = resp.Total, resp.List
			if !list {
				total = min(total, 1)
			}
		}
		if len(resp.Results) == 0 && n < total {
			return nil, fmt.Errorf("job %s: result page at %d is empty", id, n)
		}
		for _, v := range resp.Results {
			if n > 0 {
				buf.WriteByte(',')
			}
			if len(v) == 0 {
				v = wire.Value("null")
			}
			buf.Write(v)
			n++
		}
	}
	if !list {
		if n == 0 {
			return json.RawMessage("null"), nil
		}
		return buf.Bytes(), nil
	}
	return append(append([]byte{'['}, buf.Bytes()...), ']'), nil
}
