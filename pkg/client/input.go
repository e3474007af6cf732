package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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
	// Offset is the byte offset in the input where it breaks; -1 when the
	// input is well-formed but of the wrong kind.
	Offset int64
	Msg    string
	// Element is the list element (or object member) it breaks in; -1
	// outside any.
	Element int
}

func (e *InputError) Error() string {
	if e.Offset < 0 {
		return e.Msg
	}
	switch {
	case e.Element >= 0:
		return fmt.Sprintf("malformed JSON at byte %d (in element %d): %s", e.Offset, e.Element, e.Msg)
	}
	return fmt.Sprintf("malformed JSON at byte %d: %s", e.Offset, e.Msg)
}

// StreamInput reads a JSON value from r once, checking its syntax as it
// goes, and sets it on spec: as spec.Data for a call job, else as
// spec.Iterdata, which must be a list. A value up to InlineInput bytes
// rides in the spec; a larger one is cut into chunks of about a megabyte
// that the coordinator records on the job log as they are read, and the
// spec carries their reference (DataRef, IterdataRef). The spec gets its
// job id then (the chunks are the job's records). Memory stays at a chunk
// or two, whatever the input's size: the text goes through as it was read
// (white space included), never decoded. A malformed input is an
// *InputError; chunks recorded before it was found stay on the job log
// until the stream's retention drops them.
func (c *Client) StreamInput(ctx context.Context, spec *wire.JobSpec, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, lead, err := firstByte(br)
	if err != nil {
		return err
	}
	if spec.Kind != wire.JobCall && first != '[' {
		return &InputError{Offset: -1, Element: -1, Msg: "must be a JSON list, got " + coordinator.JSONKind(first)}
	}
	u := &uploader{c: c, spec: spec, chunk: inputChunk, sum: sha256.New()}
	if l, ok := c.b.(bus.Limits); ok && l.MaxMessageSize() > 0 {
		u.chunk = max(min(u.chunk, l.MaxMessageSize()/2), 1)
	}
	if err := u.copy(ctx, br, &scanner{off: lead}); err != nil {
		u.abort(err)
		return err
	}
	return u.finish(ctx)
}

// copy checks the text from br and writes it out as it is read.
func (u *uploader) copy(ctx context.Context, br *bufio.Reader, sc *scanner) error {
	buf := make([]byte, 64<<10)
	for {
		n, rerr := br.Read(buf)
		if n > 0 {
			if err := sc.write(buf[:n]); err != nil {
				return err
			}
			if err := u.write(ctx, buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return sc.end()
		}
		if rerr != nil {
			return rerr
		}
	}
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
	chunk int

	buf     []byte // the input while it is inline, else the chunk being filled
	chunked bool
	// stored: the input goes to storage through pw, read by the
	// StoreInput running on its own goroutine, which reports on stored.
	pw     *io.PipeWriter
	stored chan storedInput
	parts  int
	from   uint64
	to     uint64
	size   int64
	sum    hash.Hash
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
			// Too large to ride in the spec: record it in chunks, or
			// store it.
			u.chunked = true
			if u.spec.ID == "" {
				u.spec.ID = coordinator.NewJobID()
			}
			if u.c.StoreInput != nil {
				u.startStore(ctx)
				if _, err := u.pw.Write(u.buf); err != nil {
					return u.storeErr(err)
				}
				u.buf = nil
			}
		}
		if u.pw != nil {
			if _, err := u.pw.Write(b); err != nil {
				return u.storeErr(err)
			}
			return nil
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

// finish sets the input on the spec: inline (without its trailing white
// space), or by its reference once the last chunk is recorded.
func (u *uploader) finish(ctx context.Context) error {
	if !u.chunked {
		v := bytes.TrimRight(u.buf, " \t\r\n")
		if u.spec.Kind == wire.JobCall {
			u.spec.Data = v
		} else {
			u.spec.Iterdata = v
		}
		return nil
	}
	ref := &wire.InputRef{Size: u.size, SHA256: u.sum.Sum(nil)}
	if u.pw != nil {
		u.pw.Close()
		res := <-u.stored
		if res.err != nil {
			return fmt.Errorf("storing the job's input: %w", res.err)
		}
		ref.URL = res.url
	} else {
		if len(u.buf) > 0 {
			if err := u.flush(ctx, u.buf); err != nil {
				return err
			}
		}
		ref.From, ref.To, ref.Parts = u.from, u.to, u.parts
	}
	if u.spec.Kind == wire.JobCall {
		u.spec.Data, u.spec.DataRef = nil, ref
	} else {
		u.spec.Iterdata, u.spec.IterdataRef = nil, ref
	}
	return nil
}

type storedInput struct {
	url string
	err error
}

// startStore starts StoreInput on a pipe that write feeds.
func (u *uploader) startStore(ctx context.Context) {
	pr, pw := io.Pipe()
	u.pw, u.stored = pw, make(chan storedInput, 1)
	go func() {
		url, err := u.c.StoreInput(ctx, u.spec.ID, pr)
		pr.CloseWithError(errors.Join(err, errStoreEnded))
		u.stored <- storedInput{url, err}
	}()
}

var errStoreEnded = errors.New("the store stopped reading")

// storeErr is the store's own error when a write to it failed.
func (u *uploader) storeErr(err error) error {
	res := <-u.stored
	u.pw = nil
	if res.err != nil {
		return fmt.Errorf("storing the job's input: %w", res.err)
	}
	return fmt.Errorf("storing the job's input: %w", err)
}

// abort stops a store in progress (the input was bad): it reads no
// further and stores nothing.
func (u *uploader) abort(err error) {
	if u.pw != nil {
		u.pw.CloseWithError(err)
		<-u.stored
		u.pw = nil
	}
}
