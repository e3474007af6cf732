package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// testLogger routes a store's logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var bucketSeq atomic.Int64

// uniqueBucket returns a fresh valid bucket name.
func uniqueBucket(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, bucketSeq.Add(1))
}

// s3Config returns the COS config of the versitygw server started by
// scripts/test.sh (skips or fails without it).
func s3Config(t testing.TB) COSConfig {
	endpoint := testenv.Require(t, testenv.S3Endpoint)
	return COSConfig{
		Endpoint:  endpoint,
		Region:    DefaultRegion,
		PathStyle: true,
		AccessKey: testenv.Require(t, testenv.S3Access),
		SecretKey: Secret(testenv.Require(t, testenv.S3Secret)),
	}
}

// newS3Store returns a COS store on versitygw and a fresh bucket in it.
func newS3Store(t testing.TB) (*COS, string) {
	c, err := NewCOS(s3Config(t), SchemeS3, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := uniqueBucket("skein-test")
	if err := c.MakeBucket(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return c, b
}

// conformance is the table every writable Store passes.
func conformance(t *testing.T, s Store, bucket string) {
	ctx := context.Background()
	data := []byte("hello\nworld\nthird line\n")
	put := func(t *testing.T, key string, b []byte) {
		t.Helper()
		if err := s.Put(ctx, bucket, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	get := func(t *testing.T, key string, off, n int64) []byte {
		t.Helper()
		body, err := s.Get(ctx, bucket, key, off, n)
		if err != nil {
			t.Fatalf("get %s [%d,+%d): %v", key, off, n, err)
		}
		defer body.Close()
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		return b
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"put-get-whole", func(t *testing.T) {
			put(t, "a/whole.txt", data)
			if got := get(t, "a/whole.txt", 0, -1); !bytes.Equal(got, data) {
				t.Fatalf("got %q, want %q", got, data)
			}
		}},
		{"ranges", func(t *testing.T) {
			put(t, "a/range.txt", data)
			for _, c := range []struct {
				off, n int64
				want   string
			}{
				{0, 5, "hello"}, {6, 5, "world"}, {6, -1, string(data[6:])}, {0, 0, ""},
				{int64(len(data)) - 1, 10, "\n"}, {int64(len(data)), -1, ""}, {int64(len(data)) + 5, 3, ""},
			} {
				if got := get(t, "a/range.txt", c.off, c.n); string(got) != c.want {
					t.Errorf("get [%d,+%d) = %q, want %q", c.off, c.n, got, c.want)
				}
			}
		}},
		{"empty-object", func(t *testing.T) {
			put(t, "a/empty", nil)
			if got := get(t, "a/empty", 0, -1); len(got) != 0 {
				t.Fatalf("got %q", got)
			}
			info, err := s.Head(ctx, bucket, "a/empty")
			if err != nil || info.Size != 0 {
				t.Fatalf("head = %+v, %v", info, err)
			}
		}},
		{"overwrite", func(t *testing.T) {
			put(t, "a/over", []byte("first version, long"))
			put(t, "a/over", []byte("second"))
			if got := get(t, "a/over", 0, -1); string(got) != "second" {
				t.Fatalf("got %q", got)
			}
		}},
		{"head", func(t *testing.T) {
			put(t, "h/x.bin", data)
			info, err := s.Head(ctx, bucket, "h/x.bin")
			if err != nil {
				t.Fatal(err)
			}
			if info.Key != "h/x.bin" || info.Size != int64(len(data)) || info.Modified.IsZero() {
				t.Fatalf("head = %+v", info)
			}
		}},
		{"missing-key", func(t *testing.T) {
			_, err := s.Head(ctx, bucket, "no/such/key")
			checkErr(t, err, ErrNotFound, bucket+"/no/such/key")
			_, err = s.Get(ctx, bucket, "no/such/key", 0, -1)
			checkErr(t, err, ErrNotFound, bucket+"/no/such/key")
		}},
		{"missing-bucket", func(t *testing.T) {
			nb := uniqueBucket("skein-missing")
			_, err := s.Head(ctx, nb, "k")
			checkErr(t, err, ErrNoBucket, nb+"/k")
			_, err = s.Get(ctx, nb, "k", 0, -1)
			checkErr(t, err, ErrNoBucket, nb+"/k")
			_, err = s.List(ctx, nb, "p/")
			checkErr(t, err, ErrNoBucket, nb+"/p/")
			err = s.Put(ctx, nb, "k", strings.NewReader("x"), 1)
			checkErr(t, err, ErrNoBucket, nb+"/k")
		}},
		{"list-sorted-prefix", func(t *testing.T) {
			keys := []string{"l/b", "l/a/2", "l/a/1", "l/a-1", "l/c.txt", "lx/other", "l/z/y/x"}
			for _, k := range keys {
				put(t, k, []byte(k))
			}
			infos, err := s.List(ctx, bucket, "l/")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range infos {
				got = append(got, in.Key)
				if in.Size != int64(len(in.Key)) {
					t.Errorf("%s: size %d", in.Key, in.Size)
				}
			}
			want := []string{"l/a-1", "l/a/1", "l/a/2", "l/b", "l/c.txt", "l/z/y/x"}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("list l/ = %v, want %v", got, want)
			}
			// A prefix that is not a directory boundary.
			infos, err = s.List(ctx, bucket, "l/a")
			if err != nil || len(infos) != 3 {
				t.Fatalf("list l/a = %v, %v", infos, err)
			}
			infos, err = s.List(ctx, bucket, "nothing-here/")
			if err != nil || len(infos) != 0 {
				t.Fatalf("list nothing-here/ = %v, %v", infos, err)
			}
		}},
		{"list-many", func(t *testing.T) {
			// More keys than one page of some servers' defaults would be
			// slow here; 120 keys with names that sort differently as
			// numbers check the byte order.
			for i := range 120 {
				put(t, fmt.Sprintf("many/%d", i), []byte("x"))
			}
			infos, err := s.List(ctx, bucket, "many/")
			if err != nil || len(infos) != 120 {
				t.Fatalf("list = %d, %v", len(infos), err)
			}
			for i := 1; i < len(infos); i++ {
				if infos[i-1].Key >= infos[i].Key {
					t.Fatalf("not sorted: %s >= %s", infos[i-1].Key, infos[i].Key)
				}
			}
		}},
		{"delete", func(t *testing.T) {
			put(t, "d/sub/x", data)
			if err := s.Delete(ctx, bucket, "d/sub/x"); err != nil {
				t.Fatal(err)
			}
			_, err := s.Head(ctx, bucket, "d/sub/x")
			checkErr(t, err, ErrNotFound, "d/sub/x")
			if err := s.Delete(ctx, bucket, "d/sub/x"); err != nil {
				t.Fatalf("deleting a missing key: %v", err)
			}
			infos, err := s.List(ctx, bucket, "d/")
			if err != nil || len(infos) != 0 {
				t.Fatalf("list after delete = %v, %v", infos, err)
			}
		}},
		{"large", func(t *testing.T) {
			big := make([]byte, 3<<20+17)
			rand.Read(big)
			put(t, "big/blob", big)
			if got := get(t, "big/blob", 0, -1); !bytes.Equal(got, big) {
				t.Fatal("large object differs")
			}
			if got := get(t, "big/blob", 1<<20, 100); !bytes.Equal(got, big[1<<20:1<<20+100]) {
				t.Fatal("range of large object differs")
			}
		}},
		{"put-unknown-size", func(t *testing.T) {
			if err := s.Put(ctx, bucket, "u/x", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")), -1); err != nil {
				t.Fatal(err)
			}
			if got := get(t, "u/x", 0, -1); string(got) != "abcd" {
				t.Fatalf("got %q", got)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func checkErr(t *testing.T, err, want error, urlPart string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), urlPart) {
		t.Fatalf("error %q does not name %q", err, urlPart)
	}
}

func TestLocalConformance(t *testing.T) {
	root := t.TempDir()
	l, err := NewLocal(root, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.MakeBucket(context.Background(), "bucket"); err != nil {
		t.Fatal(err)
	}
	conformance(t, l, "bucket")
}

func TestS3Conformance(t *testing.T) {
	s, b := newS3Store(t)
	conformance(t, s, b)
}
