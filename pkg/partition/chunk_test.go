package partition

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// readChunks reads every chunk of data (stored as bucket/key in s) and
// checks each is a run of whole lines; it returns the chunks.
func readChunks(t testing.TB, s storage.Store, bucket, key string, data []byte, opt Options, window int64) [][]byte {
	t.Helper()
	ranges := Ranges(int64(len(data)), opt)
	var out [][]byte
	prevEnd := int64(0)
	for p, rg := range ranges {
		if rg[0] != prevEnd || rg[1] < rg[0] {
			t.Fatalf("ranges do not tile: %v", ranges)
		}
		prevEnd = rg[1]
		obj := &wire.Object{URL: "local://bkt/" + key, Store: "local", Bucket: bucket, Key: key, Part: p, Parts: len(ranges), Start: rg[0], End: rg[1], Size: int64(len(data))}
		rc, err := openChunk(context.Background(), s, obj, window)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("chunk %d %v: %v", p, rg, err)
		}
		out = append(out, b)
	}
	if prevEnd != int64(len(data)) {
		t.Fatalf("ranges end at %d, size %d", prevEnd, len(data))
	}
	return out
}

// checkChunks: the concatenation is the object, and each chunk starts at a
// line start and ends with '\n' or at the end of the object.
func checkChunks(t testing.TB, data []byte, chunks [][]byte) {
	t.Helper()
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		t.Fatalf("chunks joined (%d bytes) differ from the object (%d bytes)\nobject %q\nchunks %q", len(got), len(data), data, chunks)
	}
	at := 0
	for i, c := range chunks {
		if len(c) == 0 {
			continue
		}
		if at > 0 && data[at-1] != '\n' {
			t.Fatalf("chunk %d starts mid-line at %d", i, at)
		}
		at += len(c)
		if at < len(data) && c[len(c)-1] != '\n' {
			t.Fatalf("chunk %d ends mid-line at %d", i, at)
		}
	}
}

func newLocal(t testing.TB) *storage.Local {
	l, err := storage.NewLocal(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.MakeBucket(context.Background(), "bkt"); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestChunkEdges(t *testing.T) {
	l := newLocal(t)
	cases := []string{
		"", "\n", "\n\n\n", "a", "abc", "abc\n", "a\nb", "a\nb\n", "\na\n\nb",
		"one line that is much longer than any chunk here\nshort\n\nx\nanother long line without end",
		"x\n" + string(bytes.Repeat([]byte("y"), 300_000)) + "\nz\n", // a line longer than the window
	}
	for _, data := range cases {
		if err := l.Put(context.Background(), "bkt", "k", bytes.NewReader([]byte(data)), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		for _, opt := range []Options{{}, {ChunkSize: 1}, {ChunkSize: 2}, {ChunkSize: 3}, {ChunkSize: 7}, {ChunkSize: 1000}, {ChunkN: 1}, {ChunkN: 2}, {ChunkN: 3}, {ChunkN: 16}, {ChunkN: 100}} {
			if opt.ChunkSize > 0 && opt.ChunkSize < 100 && len(data) > 10_000 {
				opt.ChunkSize *= 10_000
			}
			for _, window := range []int64{1, 5, firstWindow} {
				checkChunks(t, []byte(data), readChunks(t, l, "bkt", "k", []byte(data), opt, window))
			}
		}
	}
}

func TestChunkShortObject(t *testing.T) {
	l := newLocal(t)
	data := []byte("aaaa\nbbbb\ncccc\n")
	if err := l.Put(context.Background(), "bkt", "k", bytes.NewReader(data[:8]), 8); err != nil {
		t.Fatal(err)
	}
	obj := &wire.Object{URL: "local://bkt/k", Bucket: "bkt", Key: "k", Start: 0, End: 15, Size: 15}
	rc, _ := OpenChunkStore(context.Background(), l, obj)
	_, err := io.ReadAll(rc)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("local://bkt/k")) {
		t.Fatalf("reading a shrunk object: %v", err)
	}
	if _, err := OpenChunkStore(context.Background(), l, &wire.Object{URL: "local://bkt/k", Start: 5, End: 3, Size: 15}); err == nil {
		t.Fatal("bad range accepted")
	}
}

// FuzzChunks checks the boundary computation: for any content, chunk
// size or count, and read window, the chunks are whole lines and their
// concatenation is the object.
func FuzzChunks(f *testing.F) {
	f.Add([]byte("hello world\nsecond line\n"), uint16(3), uint8(0), uint8(4))
	f.Add([]byte("no newline at all"), uint16(1), uint8(0), uint8(1))
	f.Add([]byte("\n\n\nx\n\ny"), uint16(0), uint8(5), uint8(2))
	f.Add([]byte("long line long line long line\nx\n"), uint16(0), uint8(100), uint8(1))
	f.Add([]byte(""), uint16(0), uint8(3), uint8(0))
	l := newLocal(f)
	f.Fuzz(func(t *testing.T, data []byte, chunkSize uint16, chunkN uint8, window uint8) {
		if len(data) > 1<<16 {
			return
		}
		if err := l.Put(context.Background(), "bkt", "fuzz", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		opt := Options{ChunkSize: int64(chunkSize)}
		if chunkSize == 0 {
			opt.ChunkN = int(chunkN)
		}
		checkChunks(t, data, readChunks(t, l, "bkt", "fuzz", data, opt, int64(window)+1))
	})
}

// TestChunkPicture checks the example drawn in doc.go and docs/storage.md.
func TestChunkPicture(t *testing.T) {
	l := newLocal(t)
	data := []byte("the quick\nbrown fox jumps over\ndog\n")
	if err := l.Put(context.Background(), "bkt", "pic", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got := readChunks(t, l, "bkt", "pic", data, Options{ChunkSize: 8}, firstWindow)
	want := []string{"the quick\n", "brown fox jumps over\n", "", "dog\n", ""}
	if len(got) != len(want) {
		t.Fatalf("%d chunks: %q", len(got), got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("part %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// countingStore is a real store that adds up the bytes its ranged Gets
// ask for (what an S3 server sends, whether or not the reader reads it).
type countingStore struct {
	storage.Store
	asked atomic.Int64
	gets  atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	c.asked.Add(n)
	c.gets.Add(1)
	return c.Store.Get(ctx, bucket, key, off, n)
}

// Small chunks read little more than their own bytes: the look-ahead for
// the last line's end scales with the chunk.
func TestSmallChunksReadLittleMore(t *testing.T) {
	l := newLocal(t)
	var data []byte
	for i := 0; len(data) < 1<<20; i++ {
		data = append(data, fmt.Sprintf("line %d of a text with lines of about eighty bytes, like a book %07d\n", i%10, i)...)
	}
	if err := l.Put(context.Background(), "bkt", "book", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{4 << 10, 64 << 10, 256 << 10} {
		cs := &countingStore{Store: l}
		var chunks [][]byte
		for p, rg := range Ranges(int64(len(data)), Options{ChunkSize: size}) {
			obj := &wire.Object{URL: "local://bkt/book", Store: "local", Bucket: "bkt", Key: "book", Part: p, Start: rg[0], End: rg[1], Size: int64(len(data))}
			rc, err := OpenChunkStore(context.Background(), cs, obj)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			chunks = append(chunks, b)
		}
		checkChunks(t, data, chunks)
		ratio := float64(cs.asked.Load()) / float64(len(data))
		t.Logf("chunk size %d: %d gets asked for %.3f× the object", size, cs.gets.Load(), ratio)
		if ratio > 1.1 {
			t.Errorf("chunk size %d: the chunks asked for %.2f× the object's bytes, want at most 1.1×", size, ratio)
		}
	}
}
