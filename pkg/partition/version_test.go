package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/storage"
)

// TestChunkReadPinnedToItsVersion: the chunks of an object carry the ETag
// it had when the job split it, and every read of a chunk is pinned to it.
// An object written again (same size, other bytes) before its chunk is
// read, or while a read that an outage cut is waiting to go on, fails the
// read with storage.ErrChanged (not tried again) instead of giving lines
// of two versions.
func TestChunkReadPinnedToItsVersion(t *testing.T) {
	r, direct, bucket, proxy := proxiedS3(t)
	ctx := context.Background()
	// Two versions of 32 MB of lines, of the same size.
	text := func(v string) string {
		var b strings.Builder
		for i := 0; b.Len() < 32<<20; i++ {
			fmt.Fprintf(&b, "line %09d of version %s, with a few words more\n", i, v)
		}
		return b.String()
	}
	a, b := text("a"), text("b")
	put := func(data string) {
		t.Helper()
		if err := direct.Put(ctx, bucket, "text.txt", strings.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	url := "s3://" + bucket + "/text.txt"
	split := func() *Item {
		t.Helper()
		items, err := Expand(ctx, r, iter(t, url), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].Obj == nil || items[0].Obj.ETag == "" {
			t.Fatalf("split into %+v, want one chunk that carries the object's ETag", items)
		}
		return &items[0]
	}

	// Unchanged: read whole, pinned.
	put(a)
	it := split()
	got := readAll(t, r, it)
	if got != a {
		t.Fatalf("read %d bytes, want the object's %d, byte for byte", len(got), len(a))
	}

	// Written again between the split and the read.
	put(b)
	rc, err := OpenChunk(ctx, r, it.Obj)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if !errors.Is(err, storage.ErrChanged) || !strings.Contains(err.Error(), "written again after the job split it") {
		t.Fatalf("reading a chunk of an object written again after the split: %v, want storage.ErrChanged", err)
	}

	// Written again while a read cut by an outage waits to go on.
	put(a)
	it = split()
	rc, err = OpenChunk(ctx, r, it.Obj)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	proxy.Down(true)
	put(b)
	time.AfterFunc(time.Second, func() { proxy.Down(false) })
	start := time.Now()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, storage.ErrChanged) {
		t.Fatalf("a read cut by an outage, the object written again meanwhile: %v, want storage.ErrChanged", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("failed after %v: a changed object is not worth trying again", d)
	}
}

func readAll(t *testing.T, r *storage.Resolver, it *Item) string {
	t.Helper()
	rc, err := OpenChunk(context.Background(), r, it.Obj)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
