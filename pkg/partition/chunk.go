package partition

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// How far past a chunk's nominal end the first read goes, hoping to find
// the end of the chunk's last line (later reads double): a sixteenth of
// the chunk, between minWindow and firstWindow. A small chunk reads little
// more than itself; a line longer than the window costs one more ranged
// Get per doubling.
const (
	minWindow   = 256
	firstWindow = 64 << 10
)

// tailWindow is the first window past obj's end.
func tailWindow(obj *wire.Object) int64 {
	return min(max((obj.End-obj.Start)/16, minWindow), firstWindow)
}

const maxWindow = 64 << 20

// OpenChunk returns a reader over exactly the lines of obj's chunk: the
// lines that start at a byte position in [obj.Start, obj.End). A line
// starts at 0 and after every '\n'; it ends with its '\n' or at the end
// of the object. So every line of the object is read by exactly one
// chunk, however long it is (the reader goes on past End until the
// newline), and an object without a trailing newline loses nothing.
//
// The object is read with ranged Gets: [Start-1, End+w) first, where w is
// a sixteenth of the chunk (at least 256 bytes, at most 64 KiB), then
// windows of doubling size while the last line goes on. Bytes past
// obj.Size are never read. An object that is shorter than obj.Size when
// read gives io.ErrUnexpectedEOF.
func OpenChunk(ctx context.Context, r *storage.Resolver, obj *wire.Object) (io.ReadCloser, error) {
	if obj == nil {
		return nil, fmt.Errorf("partition: no object to read")
	}
	u, s, err := r.Parse(obj.URL)
	if err != nil {
		return nil, err
	}
	if u.Bucket != obj.Bucket || u.Key != obj.Key {
		return nil, fmt.Errorf("partition: object %s: bucket %q and key %q do not match its URL", obj.URL, obj.Bucket, obj.Key)
	}
	return OpenChunkStore(ctx, s, obj)
}

// OpenChunkStore is OpenChunk on a given store (obj.Bucket, obj.Key).
func OpenChunkStore(ctx context.Context, s storage.Store, obj *wire.Object) (io.ReadCloser, error) {
	return openChunk(ctx, s, obj, tailWindow(obj))
}

func openChunk(ctx context.Context, s storage.Store, obj *wire.Object, window int64) (io.ReadCloser, error) {
	if obj.Start < 0 || obj.Start > obj.End || obj.End > obj.Size {
		return nil, fmt.Errorf("partition: object %s: bad byte range [%d, %d) of size %d", obj.URL, obj.Start, obj.End, obj.Size)
	}
	from := obj.Start
	if from > 0 {
		from-- // to see whether a line starts at Start
	}
	src := &windowReader{ctx: ctx, s: s, obj: obj, pos: from, limit: obj.End + window, window: window}
	return &chunkReader{src: src, br: bufio.NewReaderSize(src, 64<<10), pos: from, start: obj.Start, end: obj.End, url: obj.URL}, nil
}

// windowReader reads an object sequentially from pos with ranged Gets:
// up to limit first, then windows of doubling size, never past obj.Size.
type windowReader struct {
	ctx    context.Context
	s      storage.Store
	obj    *wire.Object
	pos    int64
	limit  int64 // end of the current window
	window int64
	body   io.ReadCloser
	// patience paces the tries again of a failed Get, or of a body cut
	// midway, from the position reached.
	patience storage.Patience
}

func (w *windowReader) Read(p []byte) (int, error) {
	for {
		if w.pos >= w.obj.Size {
			return 0, io.EOF
		}
		if w.body == nil {
			if w.pos >= w.limit {
				w.window = min(w.window*2, maxWindow)
				w.limit = w.pos + w.window
			}
			end := min(w.limit, w.obj.Size)
			body, err := w.get(end - w.pos)
			if err != nil {
				if w.patience.Again(w.ctx, err) {
					continue
				}
				return 0, w.patience.GaveUp(w.ctx, err)
			}
			w.body = body
		}
		n, err := w.body.Read(p)
		w.pos += int64(n)
		if n > 0 {
			w.patience.Mended()
		}
		if err != nil && err != io.EOF {
			// Cut midway: what came is good; the rest is read again
			// from the position reached.
			w.body.Close()
			w.body = nil
			if n > 0 {
				return n, nil
			}
			if w.patience.Again(w.ctx, err) {
				continue
			}
			return 0, w.patience.GaveUp(w.ctx, err)
		}
		if err == io.EOF {
			w.body.Close()
			w.body = nil
			if n > 0 {
				return n, nil
			}
			if w.pos < min(w.limit, w.obj.Size) {
				return 0, fmt.Errorf("partition: %s: object ends at %d, shorter than its size %d when partitioned: %w", w.obj.URL, w.pos, w.obj.Size, io.ErrUnexpectedEOF)
			}
			continue
		}
		return n, err
	}
}

// get reads n bytes from pos: of the version of the object the job split
// when the chunk carries its ETag and the store can pin a read to it.
func (w *windowReader) get(n int64) (io.ReadCloser, error) {
	if vg, ok := w.s.(storage.VersionGetter); ok && storage.Pinnable(w.obj.ETag) {
		body, err := vg.GetVersion(w.ctx, w.obj.Bucket, w.obj.Key, w.obj.ETag, w.pos, n)
		if errors.Is(err, storage.ErrChanged) {
			err = fmt.Errorf("partition: %s was written again after the job split it into chunks (read from byte %d): %w", w.obj.URL, w.pos, err)
		}
		return body, err
	}
	return w.s.Get(w.ctx, w.obj.Bucket, w.obj.Key, w.pos, n)
}

func (w *windowReader) Close() error {
	if w.body != nil {
		err := w.body.Close()
		w.body = nil
		return err
	}
	return nil
}

// chunkReader emits the lines that start in [start, end).
type chunkReader struct {
	src        *windowReader
	br         *bufio.Reader
	pos        int64 // object position of the next byte of br
	start, end int64
	url        string
	skipped    bool
	done       bool
}

// peek returns up to n buffered bytes, filling the buffer if empty.
func (c *chunkReader) peek(n int64) ([]byte, error) {
	if c.br.Buffered() == 0 {
		if _, err := c.br.Peek(1); err != nil {
			return nil, err
		}
	}
	return c.br.Peek(int(min(int64(c.br.Buffered()), n)))
}

func (c *chunkReader) advance(n int) {
	c.br.Discard(n)
	c.pos += int64(n)
}

// skip moves to the first line that starts at or after start. The chunk
// is empty if none starts before end.
func (c *chunkReader) skip() error {
	c.skipped = true
	if c.start == 0 {
		if c.end == 0 {
			c.done = true
		}
		return nil
	}
	// pos == start-1. A line starts at j+1 for each '\n' at j; we need
	// j+1 < end, so look at positions up to end-2.
	for c.pos < c.end-1 {
		b, err := c.peek(c.end - 1 - c.pos)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			c.advance(i + 1)
			return nil
		}
		c.advance(len(b))
	}
	c.done = true
	return nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if !c.skipped {
		if err := c.skip(); err != nil {
			return 0, c.fail(err)
		}
	}
	if c.done || len(p) == 0 {
		if c.done {
			return 0, io.EOF
		}
		return 0, nil
	}
	var b []byte
	var err error
	if c.pos < c.end-1 {
		// Every byte before end-1 belongs to the chunk.
		b, err = c.peek(min(c.end-1-c.pos, int64(len(p))))
	} else {
		// From end-1 on, the chunk's last line runs to its '\n'.
		b, err = c.peek(int64(len(p)))
		if err == nil {
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[:i+1]
				c.done = true
			}
		}
	}
	if err != nil {
		if err == io.EOF {
			c.done = true
			return 0, io.EOF
		}
		return 0, c.fail(err)
	}
	n := copy(p, b)
	c.advance(n)
	return n, nil
}

func (c *chunkReader) fail(err error) error {
	c.done = true
	return err
}

func (c *chunkReader) Close() error { return c.src.Close() }
