package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// InlineInput is the largest data or iterdata that rides inside the job
// spec; a larger one is recorded in chunks on the job log (StreamInput).
const InlineInput = 1 << 20

// inputChunk is the size of one chunk of a large input, at most.
const inputChunk = 1 << 20

// InputError is a job input that is not the JSON it should be.
type InputError struct {
	Offset int64 // byte offset in the input where it breaks
	Msg    string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("malformed JSON at byte %d: %s", e.Offset, e.Msg)
}

// StreamInput reads a JSON value from r once, checking its syntax as it
// goes, and sets it on spec: as spec.Data for a call job, else as
// spec.Iterdata, which must be a list. A value up to InlineInput bytes
// rides in the spec; a larger one is cut into chunks of about a megabyte
// (between a list's elements, an object's members, or anywhere in any
// other value) that the coordinator records on the job log as they are
// read, and the spec carries their reference (DataRef, IterdataRef). The
// spec gets its job id then (the chunks are the job's records). Memory
// stays at a chunk or two, whatever the input's size. A malformed input
// is an *InputError; chunks recorded before it was found stay on the job
// log until the stream's retention drops them.
func (c *Client) StreamInput(ctx context.Context, spec *wire.JobSpec, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := firstByte(br)
	if err != nil {
		return err
	}
	if spec.Kind != wire.JobCall && first != '[' {
		return &InputError{Msg: "must be a JSON list, got " + coordinator.JSONKind(first)}
	}
	u := &uploader{c: c, spec: spec, chunk: inputChunk, sum: sha256.New()}
	if l, ok := c.b.(bus.Limits); ok && l.MaxMessageSize() > 0 {
		u.max = l.MaxMessageSize() - 4<<10
		u.chunk = min(u.chunk, u.max/2)
	}
	switch first {
	case '[':
		u.open, u.sep, u.close = "[", ",", "]"
		u.start()
		err = u.items(ctx, br, false)
	case '{':
		u.open, u.sep, u.close = "{", ",", "}"
		u.start()
		err = u.items(ctx, br, true)
	default:
		u.start()
		err = u.raw(ctx, br)
	}
	if err != nil {
		return err
	}
	return u.finish(ctx)
}

// firstByte peeks at the first byte that is not white space.
func firstByte(br *bufio.Reader) (byte, error) {
	for off := int64(0); ; off++ {
		b, err := br.ReadByte()
		if err == io.EOF {
			return 0, &InputError{Offset: off, Msg: "empty input"}
		}
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\t' && b != '\n' && b != '\r' {
			return b, br.UnreadByte()
		}
	}
}

// uploader cuts an input into chunks and records them.
type uploader struct {
	c                *Client
	spec             *wire.JobSpec
	chunk, max       int
	open, sep, close string

	buf   []byte // the chunk being filled
	parts int
	from  uint64
	to    uint64
	size  int64
	sum   hash.Hash
	n     int // items added
	// inline holds the whole input while it may still ride in the spec.
	inline  []byte
	chunked bool
}

// items reads a list's elements (or an object's members) one by one.
func (u *uploader) items(ctx context.Context, br *bufio.Reader, object bool) error {
	dec := json.NewDecoder(br)
	if _, err := dec.Token(); err != nil {
		return inputErr(dec, err)
	}
	for i := 0; dec.More(); i++ {
		var item []byte
		if object {
			k, err := dec.Token()
			if err != nil {
				return inputErr(dec, err)
			}
			key, _ := json.Marshal(k)
			item = append(key, ':')
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			what := "element"
			if object {
				what = "member"
			}
			return fmt.Errorf("%s %d: %w", what, i, inputErr(dec, err))
		}
		item = append(item, v...)
		if u.max > 0 && len(item) > u.max {
			return fmt.Errorf("element %d is %d bytes, more than one bus message holds (%d): put it in storage and pass its URL instead", i, len(item), u.max)
		}
		if err := u.add(ctx, item); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return inputErr(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
		return inputErr(dec, err)
	}
	return nil
}

// raw reads one value that is not a list or an object: its syntax is
// checked whole (json.Valid) once it is read, and it is cut anywhere.
func (u *uploader) raw(ctx context.Context, br *bufio.Reader) error {
	dec := json.NewDecoder(br)
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return inputErr(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
		return inputErr(dec, err)
	}
	for len(v) > 0 {
		n := min(len(v), u.chunk)
		if err := u.add(ctx, v[:n]); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

func inputErr(dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &InputError{Offset: se.Offset, Msg: se.Error()}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &InputError{Offset: dec.InputOffset(), Msg: "unexpected end of input"}
	}
	return &InputError{Offset: dec.InputOffset(), Msg: err.Error()}
}

// start opens the input.
func (u *uploader) start() {
	u.inline = []byte(u.open)
	u.size = int64(len(u.open))
	u.sum.Write(u.inline)
}

// add appends one item (an element, a member, a piece of a value) to the
// input: to the inline copy while the input is small, else to the chunk
// being filled, which is recorded when it is full.
func (u *uploader) add(ctx context.Context, item []byte) error {
	sep := ""
	if u.n > 0 {
		sep = u.sep
	}
	u.n++
	u.size += int64(len(sep) + len(item))
	u.sum.Write([]byte(sep))
	u.sum.Write(item)
	if !u.chunked && len(u.inline)+len(sep)+len(item)+len(u.close) <= min(InlineInput, u.chunk) {
		u.inline = append(append(u.inline, sep...), item...)
		return nil
	}
	if !u.chunked {
		// Too large to ride in the spec: what was read so far is the
		// first chunk.
		u.chunked = true
		if u.spec.ID == "" {
			u.spec.ID = coordinator.NewJobID()
		}
		u.buf = append(u.buf[:0], u.inline[len(u.open):]...)
		u.inline = nil
	}
	if len(u.buf) > 0 && len(u.buf)+len(sep)+len(item) > u.chunk {
		if err := u.flush(ctx); err != nil {
			return err
		}
	}
	if len(u.buf) > 0 {
		u.buf = append(u.buf, sep...)
	}
	u.buf = append(u.buf, item...)
	return nil
}

// flush records the chunk being filled.
func (u *uploader) flush(ctx context.Context) error {
	resp, err := u.c.call(ctx, wire.APIInput, &wire.Request{Chunk: &wire.InputChunk{Job: u.spec.ID, Part: u.parts, Data: u.buf}})
	if err != nil {
		return fmt.Errorf("recording chunk %d of the job's input: %w", u.parts, err)
	}
	if resp.Seq == 0 || resp.Seq <= u.to {
		return fmt.Errorf("recording chunk %d of the job's input: the coordinator answered position %d (after %d)", u.parts, resp.Seq, u.to)
	}
	if u.parts == 0 {
		u.from = resp.Seq
	}
	u.to = resp.Seq
	u.parts++
	u.buf = u.buf[:0]
	return nil
}

// finish closes the input and sets it on the spec.
func (u *uploader) finish(ctx context.Context) error {
	if !u.chunked {
		u.inline = append(u.inline, u.close...)
		if u.spec.Kind == wire.JobCall {
			u.spec.Data = u.inline
		} else {
			u.spec.Iterdata = u.inline
		}
		return nil
	}
	if len(u.buf) > 0 || u.parts == 0 {
		if err := u.flush(ctx); err != nil {
			return err
		}
	}
	u.size += int64(len(u.close))
	u.sum.Write([]byte(u.close))
	ref := &wire.InputRef{From: u.from, To: u.to, Parts: u.parts, Open: u.open, Sep: u.sep, Close: u.close, Size: u.size, SHA256: u.sum.Sum(nil)}
	if u.spec.Kind == wire.JobCall {
		u.spec.Data, u.spec.DataRef = nil, ref
	} else {
		u.spec.Iterdata, u.spec.IterdataRef = nil, ref
	}
	return nil
}
