package partition

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// genText makes about size bytes of text: lines of 0 to 40 words of 1 to
// 12 letters, separated by spaces or tabs, some empty lines, one line of
// longLine bytes, and no newline at the end.
func genText(size, longLine int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	long := false
	for b.Len() < size {
		if !long && b.Len() > size/3 && longLine > 0 {
			long = true
			for b.Len() < size/3+longLine {
				b.WriteString("long")
				b.WriteByte(" \t"[rng.IntN(2)])
			}
			b.WriteByte('\n')
			continue
		}
		words := rng.IntN(41)
		for w := range words {
			if w > 0 {
				b.WriteByte(" \t"[rng.IntN(5)/4])
			}
			for range 1 + rng.IntN(12) {
				b.WriteByte(byte('a' + rng.IntN(26)))
			}
		}
		b.WriteByte('\n')
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// wcW runs the real `wc -w` on a file.
func wcW(t testing.TB, path string) int64 {
	cmd := exec.Command("wc", "-w", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wc -w: %v", err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// countItems reads every item's chunk (4 at a time) and sums the words.
func countItems(t testing.TB, r *storage.Resolver, items []Item) int64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make(chan error, len(items))
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rc, err := OpenChunk(context.Background(), r, it.Obj)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			n, err := fn.CountWords(rc)
			if err != nil {
				errs <- fmt.Errorf("%s part %d: %w", it.Obj.URL, it.Obj.Part, err)
				return
			}
			total.Add(n)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return total.Load()
}

func iter(t testing.TB, elems ...any) []wire.Value {
	out := make([]wire.Value, len(elems))
	for i, e := range elems {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func localResolver(t testing.TB) *storage.Resolver {
	c := storage.DefaultConfig()
	c.LocalRoot = t.TempDir()
	r, err := storage.NewResolver(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// s3Env returns a resolver on versitygw and a fresh bucket.
func s3Env(t testing.TB) (*storage.Resolver, storage.Store, string) {
	endpoint := testenv.Require(t, testenv.S3Endpoint)
	c := storage.DefaultConfig()
	c.LocalRoot = t.TempDir()
	c.COS = storage.COSConfig{
		Endpoint: endpoint, Region: storage.DefaultRegion, PathStyle: true,
		AccessKey: testenv.Require(t, testenv.S3Access),
		SecretKey: storage.Secret(testenv.Require(t, testenv.S3Secret)),
	}
	r, err := storage.NewResolver(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, s, err := r.Parse("s3://placeholder")
	if err != nil {
		t.Fatal(err)
	}
	bucket := fmt.Sprintf("skein-part-%d", time.Now().UnixNano()%1e9)
	if err := s.(storage.BucketMaker).MakeBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	return r, s, bucket
}

type textCase struct {
	url  string // the object's URL
	path string // a local copy for wc
	size int
}

// wordCounts checks map-over-chunks word counts against wc -w for the
// chunkings of the issue.
func wordCounts(t *testing.T, r *storage.Resolver, big, small textCase) {
	for _, tc := range []struct {
		text textCase
		opt  Options
	}{
		{big, Options{}},
		{big, Options{ChunkN: 1}},
		{big, Options{ChunkN: 3}},
		{big, Options{ChunkN: 16}},
		{big, Options{ChunkN: 100}},
		{big, Options{ChunkSize: 1 << 20}},
		{big, Options{ChunkSize: 100_000}}, // smaller than the long line
		{big, Options{ChunkSize: 16 << 10}},
		{small, Options{ChunkSize: 1}},
		{small, Options{ChunkSize: 7}},
		{small, Options{ChunkN: 100}},
	} {
		t.Run(fmt.Sprintf("%d-bytes/size=%d,n=%d", tc.text.size, tc.opt.ChunkSize, tc.opt.ChunkN), func(t *testing.T) {
			items, err := Expand(context.Background(), r, iter(t, tc.text.url), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			want := numParts(int64(tc.text.size), tc.opt)
			if int64(len(items)) != want {
				t.Fatalf("%d items, want %d", len(items), want)
			}
			for i, it := range items {
				if it.Obj.Part != i || it.Obj.Parts != len(items) || it.Obj.Size != int64(tc.text.size) || it.Obj.URL != tc.text.url {
					t.Fatalf("item %d: %+v", i, it.Obj)
				}
			}
			if got, wc := countItems(t, r, items), wcW(t, tc.text.path); got != wc {
				t.Fatalf("map over %d chunks counted %d words, wc -w says %d", len(items), got, wc)
			}
		})
	}
}

func writeText(t *testing.T, dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWordCountLocal(t *testing.T) {
	dir := t.TempDir()
	bigData := genText(3<<20, 200_000, 1)
	smallData := genText(1500, 300, 2)
	bigPath := writeText(t, dir, "big.txt", bigData)
	smallPath := writeText(t, dir, "small.txt", smallData)
	wordCounts(t, localResolver(t),
		textCase{url: "local://" + bigPath, path: bigPath, size: len(bigData)},
		textCase{url: "local://" + smallPath, path: smallPath, size: len(smallData)})
}

func TestWordCountS3(t *testing.T) {
	r, s, bucket := s3Env(t)
	dir := t.TempDir()
	bigData := genText(2<<20, 200_000, 3)
	smallData := genText(1000, 300, 4)
	ctx := context.Background()
	for k, d := range map[string][]byte{"text/big.txt": bigData, "text/small.txt": smallData} {
		if err := s.Put(ctx, bucket, k, bytes.NewReader(d), int64(len(d))); err != nil {
			t.Fatal(err)
		}
	}
	wordCounts(t, r,
		textCase{url: "s3://" + bucket + "/text/big.txt", path: writeText(t, dir, "big.txt", bigData), size: len(bigData)},
		textCase{url: "s3://" + bucket + "/text/small.txt", path: writeText(t, dir, "small.txt", smallData), size: len(smallData)})
}

// manyObjects: 50 objects under a prefix give 50 items in key order, and
// elements keep iterdata order.
func manyObjects(t *testing.T, r *storage.Resolver, s storage.Store, base storage.URL) {
	ctx := context.Background()
	var keys []string
	for i := range 50 {
		k := fmt.Sprintf("%smany/%d.txt", base.Key, i)
		keys = append(keys, k)
		body := fmt.Sprintf("object %d\n", i)
		if err := s.Put(ctx, base.Bucket, k, strings.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	one := base.Object(base.Key + "one.txt")
	if err := s.Put(ctx, one.Bucket, one.Key, strings.NewReader("x y\n"), 4); err != nil {
		t.Fatal(err)
	}
	items, err := Expand(ctx, r, iter(t, 7, base.Object(base.Key+"many/").String(), map[string]any{"obj": one.String(), "tag": "t"}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 52 {
		t.Fatalf("%d items, want 52", len(items))
	}
	if items[0].Obj != nil || string(items[0].Value) != "7" || items[0].Source != 0 {
		t.Fatalf("plain element: %+v", items[0])
	}
	sortedKeys := append([]string(nil), keys...)
	slicesSort(sortedKeys)
	for i, it := range items[1:51] {
		if it.Source != 1 || it.Obj.Key != sortedKeys[i] || it.Obj.Group != i || it.Obj.Parts != 1 || it.Obj.URL != base.Object(sortedKeys[i]).String() {
			t.Fatalf("item %d: source %d %+v, want key %s", i+1, it.Source, it.Obj, sortedKeys[i])
		}
	}
	last := items[51]
	if last.Source != 2 || last.Obj.Key != one.Key || last.Obj.Group != 50 || string(last.Kwargs["tag"]) != `"t"` || len(last.Kwargs) != 1 {
		t.Fatalf("last item: %+v %+v", last, last.Obj)
	}
	if sortedKeys[2] != base.Key+"many/10.txt" {
		t.Fatalf("key order: %v", sortedKeys[:3])
	}
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestManyObjectsLocal(t *testing.T) {
	r := localResolver(t)
	base, s, err := r.Parse("local://" + t.TempDir() + "/data/")
	if err != nil {
		t.Fatal(err)
	}
	manyObjects(t, r, s, base)
}

func TestManyObjectsS3(t *testing.T) {
	r, s, bucket := s3Env(t)
	manyObjects(t, r, s, storage.URL{Scheme: "s3", Bucket: bucket, Key: "p/"})
}

// badInputs: every bad input gives an error naming the URL or field.
func badInputs(t *testing.T, r *storage.Resolver, base storage.URL, missingBucket string) {
	ctx := context.Background()
	exists := base.Object(base.Key + "exists.txt")
	_, s, _ := r.Parse(exists.String())
	if err := s.Put(ctx, exists.Bucket, exists.Key, strings.NewReader("a\n"), 2); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		elems  []any
		opt    Options
		is     error
		saying []string
	}{
		{"missing-bucket", []any{missingBucket}, Options{}, storage.ErrNoBucket, []string{missingBucket}},
		{"missing-key", []any{base.Object(base.Key + "nope.txt").String()}, Options{}, storage.ErrNotFound, []string{base.Object(base.Key + "nope.txt").String(), "end the URL with '/'"}},
		{"empty-prefix", []any{base.Object(base.Key + "nothing/").String()}, Options{}, ErrNoObjects, []string{base.Object(base.Key + "nothing/").String()}},
		{"malformed", []any{"cos://Bad_Bucket/x"}, Options{}, storage.ErrBadURL, []string{"cos://Bad_Bucket/x", "iterdata[0]"}},
		{"malformed-in-obj", []any{1, map[string]any{"obj": "s3:///x"}}, Options{}, storage.ErrBadURL, []string{"s3:///x", "iterdata[1]"}},
		{"obj-not-url", []any{map[string]any{"obj": 5}}, Options{}, nil, []string{`"obj"`, "iterdata[0]"}},
		{"negative-chunk-size", []any{exists.String()}, Options{ChunkSize: -1}, ErrOptions, []string{"chunk_size"}},
		{"both", []any{exists.String()}, Options{ChunkSize: 10, ChunkN: 2}, ErrOptions, []string{"chunk_size and chunk_n"}},
		{"chunking-without-storage", []any{1, 2}, Options{ChunkN: 2}, ErrOptions, []string{"chunk_n", "names storage"}},
		{"too-many", []any{exists.String()}, Options{ChunkN: 10, MaxItems: 5}, ErrOptions, []string{exists.String(), "chunk_n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Expand(ctx, r, iter(t, c.elems...), c.opt)
			if err == nil {
				t.Fatal("accepted")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("%v is not %v", err, c.is)
			}
			for _, s := range c.saying {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("%q does not say %q", err, s)
				}
			}
			t.Log(err)
		})
	}
}

func TestBadInputsLocal(t *testing.T) {
	r := localResolver(t)
	dir := t.TempDir()
	base, _, _ := r.Parse("local://" + dir + "/")
	badInputs(t, r, base, "local://no-such-bucket/x/")
}

func TestBadInputsS3(t *testing.T) {
	r, _, bucket := s3Env(t)
	badInputs(t, r, storage.URL{Scheme: "s3", Bucket: bucket, Key: "bad/"}, "s3://skein-no-such-bucket-42/x/")
}

func TestNewOptions(t *testing.T) {
	zero, one := int64(0), 1
	nzero := 0
	for _, c := range []struct {
		size *int64
		n    *int
		want string
	}{
		{&zero, nil, "chunk_size must be > 0"},
		{nil, &nzero, "chunk_n must be > 0"},
		{&zero, &one, "chunk_size and chunk_n are exclusive"},
	} {
		if _, err := NewOptions(c.size, c.n); err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrOptions) {
			t.Errorf("NewOptions: %v, want %q", err, c.want)
		}
	}
	size := int64(100)
	if o, err := NewOptions(&size, nil); err != nil || o.ChunkSize != 100 {
		t.Fatalf("%+v %v", o, err)
	}
}

func TestRanges(t *testing.T) {
	for _, c := range []struct {
		size int64
		opt  Options
		want string
	}{
		{10, Options{}, "[[0 10]]"},
		{0, Options{ChunkSize: 4}, "[[0 0]]"},
		{10, Options{ChunkSize: 4}, "[[0 4] [4 8] [8 10]]"},
		{10, Options{ChunkN: 3}, "[[0 3] [3 6] [6 10]]"},
		{2, Options{ChunkN: 3}, "[[0 0] [0 1] [1 2]]"},
		{1 << 62, Options{ChunkN: 2}, fmt.Sprintf("[[0 %d] [%d %d]]", int64(1)<<61, int64(1)<<61, int64(1)<<62)},
	} {
		if got := fmt.Sprint(Ranges(c.size, c.opt)); got != c.want {
			t.Errorf("Ranges(%d, %+v) = %s, want %s", c.size, c.opt, got, c.want)
		}
	}
}
