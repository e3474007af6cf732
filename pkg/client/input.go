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
	"strings"

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
	// Offset is the byte offset in the input where it breaks; -1 when the
	// input is well-formed but of the wrong kind.
	Offset int64
	Msg    string
	// Element is the list element (or object member) it breaks in; -1
	// outside any.
	Element int
	// InElement says that the break lies inside Element, which starts
	// after Offset (past white space and a separator): the decoder does
	// not tell where inside (ElementStart finds it).
	InElement bool
}

func (e *InputError) Error() string {
	if e.Offset < 0 {
		return e.Msg
	}
	switch {
	case e.InElement && e.Element >= 0:
		return fmt.Sprintf("malformed JSON in element %d (after byte %d): %s", e.Element, e.Offset, e.Msg)
	case e.InElement:
		return fmt.Sprintf("malformed JSON after byte %d: %s", e.Offset, e.Msg)
	case e.Element >= 0:
		return fmt.Sprintf("malformed JSON at byte %d (in element %d): %s", e.Offset, e.Element, e.Msg)
	}
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
	first, lead, err := firstByte(br)
	if err != nil {
		return err
	}
	if spec.Kind != wire.JobCall && first != '[' {
		return &InputError{Offset: -1, Element: -1, Msg: "must be a JSON list, got " + coordinator.JSONKind(first)}
	}
	u := &uploader{c: c, spec: spec, chunk: inputChunk, sum: sha256.New(), lead: lead}
	if l, ok := c.b.(bus.Limits); ok && l.MaxMessageSize() > 0 {
		u.chunk = max(min(u.chunk, l.MaxMessageSize()/2), 1)
	}
	switch first {
	case '[', '{':
		err = u.items(ctx, br, first == '{')
	default:
		err = u.raw(ctx, br)
	}
	if err != nil {
		return err
	}
	return u.finish(ctx)
}

// firstByte peeks at the first byte that is not white space, and says how
// many it skipped.
func firstByte(br *bufio.Reader) (byte, int64, error) {
	for off := int64(0); ; off++ {
		b, err := br.ReadByte()
		if err == io.EOF {
			return 0, off, &InputError{Offset: off, Element: -1, Msg: "empty input"}
		}
		if err != nil {
			return 0, off, err
		}
		if b != ' ' && b != '\t' && b != '\n' && b != '\r' {
			return b, off, br.UnreadByte()
		}
	}
}

// uploader writes an input out: inline while it is small, else in
// chunks of u.chunk bytes cut anywhere (an element larger than a message
// spans chunks), recorded as they fill.
type uploader struct {
	c     *Client
	spec  *wire.JobSpec
	lead  int64 // white space before the value
	chunk int

	buf     []byte // the input while it is inline, else the chunk being filled
	chunked bool
	n       int // items written
	parts   int
	from    uint64
	to      uint64
	size    int64
	sum     hash.Hash
}

// items reads a list's elements (or an object's members) one by one.
func (u *uploader) items(ctx context.Context, br *bufio.Reader, object bool) error {
	dec := json.NewDecoder(br)
	open, err := dec.Token()
	if err != nil {
		return u.inputErr(dec, err, -1)
	}
	if err := u.write(ctx, []byte(open.(json.Delim).String())); err != nil {
		return err
	}
	i := 0
	for ; dec.More(); i++ {
		var item []byte
		if object {
			k, err := dec.Token()
			if err != nil {
				return u.inputErr(dec, err, i)
			}
			key, _ := json.Marshal(k)
			item = append(key, ':')
		}
		var v json.RawMessage
		base := dec.InputOffset()
		if err := dec.Decode(&v); err != nil {
			return u.decodeErr(dec, err, i, base)
		}
		if err := u.add(ctx, item, v); err != nil {
			return err
		}
	}
	end, err := dec.Token()
	if err != nil {
		return u.inputErr(dec, err, i)
	}
	if err := u.write(ctx, []byte(end.(json.Delim).String())); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
		return u.inputErr(dec, err, -1)
	}
	return nil
}

// raw reads one value that is not a list or an object: its syntax is
// checked whole (json.Valid) once it is read, and it is cut anywhere.
func (u *uploader) raw(ctx context.Context, br *bufio.Reader) error {
	dec := json.NewDecoder(br)
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return u.decodeErr(dec, err, -1, 0)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
		return u.inputErr(dec, err, -1)
	}
	return u.write(ctx, v)
}

// inputErr turns an error of the decoder's Token into an *InputError (a
// read error stays what it is). Offsets count from the input's start.
func (u *uploader) inputErr(dec *json.Decoder, err error, elem int) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// Offset counts the offending byte: it sits at Offset-1.
		return &InputError{Offset: u.lead + max(se.Offset-1, 0), Element: elem, Msg: se.Error()}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &InputError{Offset: u.lead + dec.InputOffset(), Element: elem, Msg: "unexpected end of input"}
	case strings.HasPrefix(err.Error(), "json: "), strings.HasPrefix(err.Error(), "unexpected data"):
		return &InputError{Offset: u.lead + dec.InputOffset(), Element: elem, Msg: err.Error()}
	}
	return err
}

// decodeErr is inputErr for Decode, whose syntax errors count from the
// start of the value it decoded (base is where the decoder stood before).
func (u *uploader) decodeErr(dec *json.Decoder, err error, elem int, base int64) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &InputError{Offset: u.lead + base, InElement: true, Element: elem, Msg: se.Error()}
	}
	return u.inputErr(dec, err, elem)
}

// write appends b to the input, recording chunks as they fill.
func (u *uploader) write(ctx context.Context, b []byte) error {
	u.size += int64(len(b))
	u.sum.Write(b)
	for len(b) > 0 {
		if !u.chunked {
			if len(u.buf)+len(b) <= min(InlineInput, u.chunk) {
				u.buf = append(u.buf, b...)
				return nil
			}
			// Too large to ride in the spec: record it in chunks.
			u.chunked = true
			if u.spec.ID == "" {
				u.spec.ID = coordinator.NewJobID()
			}
		}
		n := min(len(b), u.chunk-len(u.buf))
		u.buf = append(u.buf, b[:n]...)
		b = b[n:]
		if len(u.buf) >= u.chunk {
			if err := u.flush(ctx, u.buf); err != nil {
				return err
			}
			u.buf = u.buf[:0]
		}
	}
	return nil
}

// add writes one element (or object member: key then value) with its
// separator.
func (u *uploader) add(ctx context.Context, key, value []byte) error {
	if u.n > 0 {
		key = append([]byte{','}, key...)
	}
	u.n++
	if err := u.write(ctx, key); err != nil {
		return err
	}
	return u.write(ctx, value)
}

// flush records one chunk.
func (u *uploader) flush(ctx context.Context, data []byte) error {
	resp, err := u.c.call(ctx, wire.APIInput, &wire.Request{Chunk: &wire.InputChunk{Job: u.spec.ID, Part: u.parts, Data: data}})
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
	return nil
}

// finish sets the input on the spec: inline, or by its reference once
// the last chunk is recorded.
func (u *uploader) finish(ctx context.Context) error {
	if !u.chunked {
		if u.spec.Kind == wire.JobCall {
			u.spec.Data = u.buf
		} else {
			u.spec.Iterdata = u.buf
		}
		return nil
	}
	if len(u.buf) > 0 {
		if err := u.flush(ctx, u.buf); err != nil {
			return err
		}
	}
	ref := &wire.InputRef{From: u.from, To: u.to, Parts: u.parts, Size: u.size, SHA256: u.sum.Sum(nil)}
	if u.spec.Kind == wire.JobCall {
		u.spec.Data, u.spec.DataRef = nil, ref
	} else {
		u.spec.Iterdata, u.spec.IterdataRef = nil, ref
	}
	return nil
}
