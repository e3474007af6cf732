package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Large job inputs. A spec's data or iterdata that would not fit in one
// message travels in chunks: the submitter sends each chunk to the
// coordinator (APIInput), which records it, signed, on the job log under
// JobInputSubject(job) and answers with its stream position; the spec
// then carries a wire.InputRef (first and last position, the number of
// chunks, the assembled value's size and SHA-256) instead of the value.
// Any coordinator reads the value back by position (Subscribe From..To),
// when the job is submitted and again when it takes the job up after a
// restart, and checks every chunk's signature, their order, the size and
// the hash. The chunks live on the stream as long as the job's other
// records (the event stream's retention), so nothing needs cleaning up.
// A submitter with storage configured stores the input as an artifact of
// the job instead (InputRef.URL), which Hooks.LoadInput opens and the
// Ended hook removes. See docs/large-jobs.md.

// MaxInputSize bounds one job input assembled from chunks.
const MaxInputSize = 4<<30 - 1

// recordInput is the APIInput handler: it records one chunk of a job's
// input on the job log and returns its position.
func (c *Coordinator) recordInput(ctx context.Context, req *wire.Request) (wire.Response, error) {
	ch := req.Chunk
	switch {
	case ch == nil:
		return wire.Response{}, fmt.Errorf("%w: input request without a chunk", ErrInvalid)
	case !validPool(ch.Job):
		return wire.Response{}, fmt.Errorf("%w: input chunk of job %q: letters, digits, - and _ only", ErrInvalid, ch.Job)
	case ch.Part < 0:
		return wire.Response{}, fmt.Errorf("%w: input chunk part %d: must not be negative", ErrInvalid, ch.Part)
	}
	data, err := wire.Encode(wire.KindInput, ch)
	if err != nil {
		return wire.Response{}, err
	}
	m := bus.Message{Data: data, ID: ch.Job + "-input-" + strconv.Itoa(ch.Part)}
	c.sign(&m)
	seq, err := c.bus.PublishSeq(ctx, wire.JobInputSubject(ch.Job), m)
	if err != nil {
		return wire.Response{}, fmt.Errorf("recording input chunk %d of job %s: %w", ch.Part, ch.Job, err)
	}
	return wire.Response{Seq: seq}, nil
}

// specInputs returns the spec's data and iterdata, read back from the job
// log when the spec holds references to them.
func (c *Coordinator) specInputs(ctx context.Context, spec *wire.JobSpec) (data, iter wire.Value, err error) {
	data, iter = spec.Data, spec.Iterdata
	if spec.DataRef != nil {
		if data, err = c.readInput(ctx, spec, spec.DataRef); err != nil {
			return nil, nil, fmt.Errorf("data: %w", err)
		}
	}
	if spec.IterdataRef != nil {
		if iter, err = c.readInput(ctx, spec, spec.IterdataRef); err != nil {
			return nil, nil, fmt.Errorf("iterdata: %w", err)
		}
	}
	return data, iter, nil
}

// readInput assembles the input ref names from its chunks on the job
// log. A chunk recorded twice (a retried request) counts once; a missing
// chunk, one the coordinator did not sign, or a value whose size or hash
// differs from the reference is an error.
func (c *Coordinator) readInput(ctx context.Context, spec *wire.JobSpec, ref *wire.InputRef) (wire.Value, error) {
	job := spec.ID
	switch {
	case ref.URL == "" && (ref.Parts <= 0 || ref.From == 0 || ref.To < ref.From):
		return nil, fmt.Errorf("%w: input reference with %d chunks at positions %d..%d", ErrInvalid, ref.Parts, ref.From, ref.To)
	case ref.Size < 0 || ref.Size > MaxInputSize:
		return nil, fmt.Errorf("%w: input of %d bytes: at most %d", ErrInvalid, ref.Size, int64(MaxInputSize))
	case len(ref.SHA256) != sha256.Size:
		return nil, fmt.Errorf("%w: input reference without a SHA-256", ErrInvalid)
	}
	if ref.URL != "" {
		return c.loadInput(ctx, spec, ref)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.bus.Subscribe(ctx, wire.JobInputSubject(job), bus.SubscribeOptions{From: ref.From, To: ref.To})
	if err != nil {
		return nil, fmt.Errorf("reading the job's input chunks: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(int(ref.Size))
	next := 0
	for m := range ch {
		if !c.signedByUs(m) {
			c.log.Warn("ignoring an input chunk the coordinator did not sign", "job", job, "seq", m.Seq)
			continue
		}
		var chunk wire.InputChunk
		if err := wire.Decode(m.Data, wire.KindInput, &chunk); err != nil || chunk.Job != job {
			c.log.Warn("ignoring a malformed input chunk", "job", job, "seq", m.Seq, "err", err)
			continue
		}
		switch {
		case chunk.Part < next:
			continue // recorded twice
		case chunk.Part > next:
			return nil, fmt.Errorf("input chunk %d is missing from the job log (found chunk %d at position %d)", next, chunk.Part, m.Seq)
		}
		if int64(buf.Len()+len(chunk.Data)) > ref.Size {
			return nil, fmt.Errorf("input chunks add up to more than the %d bytes of the reference", ref.Size)
		}
		buf.Write(chunk.Data)
		next++
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.log.Debug("job input read from the job log", "job", job, "chunks", next, "bytes", buf.Len())
	if next != ref.Parts {
		return nil, fmt.Errorf("found %d of the input's %d chunks on the job log (positions %d..%d; older than the stream's retention?)", next, ref.Parts, ref.From, ref.To)
	}
	return checkInput(buf.Bytes(), ref)
}

// loadInput reads an input the submitter put in storage.
func (c *Coordinator) loadInput(ctx context.Context, spec *wire.JobSpec, ref *wire.InputRef) (wire.Value, error) {
	h := c.cfg.Hooks.LoadInput
	if h == nil {
		return nil, fmt.Errorf("%w: the input is in storage, and this coordinator has no storage configured", ErrInvalid)
	}
	r, err := h(ctx, spec, ref.URL)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	buf.Grow(int(ref.Size))
	if _, err := io.Copy(&buf, io.LimitReader(r, ref.Size+1)); err != nil {
		return nil, fmt.Errorf("reading the job's input from storage: %w", err)
	}
	c.log.Debug("job input read from storage", "job", spec.ID, "bytes", buf.Len())
	return checkInput(buf.Bytes(), ref)
}

// checkInput checks an input read back against its reference.
func checkInput(v []byte, ref *wire.InputRef) (wire.Value, error) {
	if sum := sha256.Sum256(v); int64(len(v)) != ref.Size || !bytes.Equal(sum[:], ref.SHA256) {
		return nil, fmt.Errorf("the input assembled from its chunks (%d bytes) does not match its reference (%d bytes, SHA-256 %x)", len(v), ref.Size, ref.SHA256)
	}
	if !json.Valid(v) {
		return nil, fmt.Errorf("%w: the input assembled from its chunks is not valid JSON", ErrInvalid)
	}
	return v, nil
}
