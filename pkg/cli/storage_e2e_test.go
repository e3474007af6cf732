package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// writeText writes a text of about size bytes with lines of varied
// length -- empty lines, runs of blanks and tabs, lines far longer than a
// chunk's first read window (200 KiB) -- and no trailing newline.
func writeText(t *testing.T, path string, size int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(4, 2))
	words := strings.Fields("the quick brown fox jumps over the lazy dog and Skein maps every line of every object exactly once while Lithops loses some past its overrun")
	var b bytes.Buffer
	for b.Len() < size {
		n := []int{0, 1, 2, 5, 12, 40, 90}[rng.IntN(7)]
		if rng.IntN(400) == 0 {
			n = 30000 // a line of ~200 KiB
		}
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString([]string{" ", "  ", "\t", " \t "}[rng.IntN(4)])
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		b.WriteByte('\n')
	}
	b.WriteString("last line without a newline")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wcWords is `LC_ALL=C wc -w path`.
func wcWords(t *testing.T, path string) int64 {
	t.Helper()
	cmd := exec.Command("wc", "-w", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wc -w: %v", err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatalf("wc -w printed %q", out)
	}
	return n
}

// mustSubmit runs submit and fails the test unless it exits 0.
func mustSubmit(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := submit(t, args...)
	if code != 0 {
		t.Fatalf("submit %s: exit %d\nstdout: %.300s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func sumList(t *testing.T, out string) (int64, int) {
	t.Helper()
	var xs []int64
	if err := json.Unmarshal([]byte(out), &xs); err != nil {
		t.Fatalf("result %.200q is not a list of integers: %v", out, err)
	}
	var s int64
	for _, x := range xs {
		s += x
	}
	return s, len(xs)
}

// chunkings are the word-count runs of issue 4.
var chunkings = [][]string{
	{"--chunk-n", "1"}, {"--chunk-n", "3"}, {"--chunk-n", "16"}, {"--chunk-n", "100"},
	{"--chunk-size", "65536"}, {"--chunk-size", "7777"},
}

// checkWordCounts maps wordcount over url for every chunking and checks
// the sum against want, then the same total through mapreduce + sum.
func checkWordCounts(t *testing.T, url string, want int64, extra ...string) {
	t.Helper()
	for _, ch := range chunkings {
		args := append([]string{"map", "--function", "wordcount", "--iterdata", `["` + url + `"]`, "--quiet"}, ch...)
		got, n := sumList(t, mustSubmit(t, append(args, extra...)...))
		if got != want {
			t.Errorf("%s over %d tasks: %d words, wc -w says %d", strings.Join(ch, " "), n, got, want)
		}
		if ch[0] == "--chunk-n" && strconv.Itoa(n) != ch[1] {
			t.Errorf("%s: %d results", strings.Join(ch, " "), n)
		}
	}
	out := mustSubmit(t, append([]string{"mapreduce", "--function", "wordcount", "--iterdata", `["` + url + `"]`, "--chunk-n", "16", "--reduce-function", "sum", "--quiet"}, extra...)...)
	if strings.TrimSpace(out) != strconv.FormatInt(want, 10) {
		t.Errorf("mapreduce wordcount + sum: %s, want %d", out, want)
	}
}

// TestStorageEmbedded runs the storage data path inside submit on the
// local store: word counts over chunks equal wc -w, a 20 MB result comes
// back through the artifacts store and --clean leaves nothing, a large
// input travels by reference, and bad inputs exit 2 naming the URL.
func TestStorageEmbedded(t *testing.T) {
	root := t.TempDir()
	t.Setenv(storage.EnvLocalRoot, root)
	t.Setenv(storage.EnvArtifacts, "local://art/jobs/")
	t.Setenv(storage.EnvInlineLimit, "64KiB")
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	writeText(t, text, 3<<20)
	want := wcWords(t, text)
	t.Logf("text: %s, wc -w %d", text, want)

	t.Run("wordcount", func(t *testing.T) { checkWordCounts(t, "local://"+text, want) })

	t.Run("prefix of 50 objects", func(t *testing.T) {
		checkFiftyObjects(t, func(i int, body []byte) {
			d := filepath.Join(root, "books", "many")
			_ = os.MkdirAll(d, 0o755)
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("obj-%02d.txt", i)), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "local://books/many/", "local://"+filepath.Join(root, "books", "many")+"/")
	})

	t.Run("20 MB result and --clean", func(t *testing.T) {
		jobs := filepath.Join(root, "art", "jobs")
		checkBigResult(t, func() []string { return listFiles(t, jobs) })
	})

	t.Run("large input by reference", func(t *testing.T) {
		checkBigInput(t, func() []string { return listFiles(t, filepath.Join(root, "art", "jobs")) })
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			name, iter string
			args       []string
			want       string
		}{
			{"missing key", `["local://` + dir + `/nope.txt"]`, nil, "local://" + dir + "/nope.txt: object not found"},
			{"missing bucket", `["local://nobucket/x.txt"]`, nil, "local://nobucket/x.txt"},
			{"empty prefix", `["local://` + dir + `/none/"]`, nil, "local://" + dir + "/none/: matches no object"},
			{"malformed URL", `["s3://"]`, nil, `malformed storage URL "s3://"`},
			{"malformed obj", `[{"obj":"cos//b/k"}]`, nil, `"obj" must be a storage URL string`},
			{"chunk_size 0", `["local://` + text + `"]`, []string{"--chunk-size", "0"}, "--chunk-size 0"},
			{"chunk_n 0", `["local://` + text + `"]`, []string{"--chunk-n", "0"}, "--chunk-n 0"},
			{"chunk_size and chunk_n", `["local://` + text + `"]`, []string{"--chunk-size", "10", "--chunk-n", "2"}, "chunk_size and chunk_n"},
			{"chunking without storage", `[1,2]`, []string{"--chunk-n", "2"}, "no iterdata element names storage"},
			{"obj in extra_params", `["local://` + text + `"]`, []string{"--extra-params", `{"obj":1}`}, `"obj" is reserved`},
		} {
			t.Run(c.name, func(t *testing.T) {
				out, errOut, code := submit(t, append([]string{"map", "--function", "wordcount", "--iterdata", c.iter}, c.args...)...)
				if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
					t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and a message holding %q", code, out, errOut, c.want)
				}
			})
		}
	})

	t.Run("bad storage config", func(t *testing.T) {
		t.Setenv(storage.EnvInlineLimit, "lots")
		_, errOut, code := submit(t, "call", "--function", "add", "--data", `{"x":1,"y":2}`)
		if code != 2 || !strings.Contains(errOut, storage.EnvInlineLimit) {
			t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 naming %s", code, errOut, storage.EnvInlineLimit)
		}
	})
}

// checkFiftyObjects writes 50 objects (object i holds i+1 words) in an
// order other than their keys' and maps wordcount over their prefix:
// one result per object, in key order.
func checkFiftyObjects(t *testing.T, put func(i int, body []byte), urls ...string) {
	t.Helper()
	for _, i := range rand.New(rand.NewPCG(7, 7)).Perm(50) {
		put(i, []byte(strings.Repeat("word ", i+1)+"\n"))
	}
	want := make([]int, 50)
	for i := range want {
		want[i] = i + 1
	}
	wantJSON, _ := json.Marshal(want)
	for _, u := range urls {
		out := mustSubmit(t, "map", "--function", "wordcount", "--iterdata", `["`+u+`"]`, "--quiet")
		if strings.TrimSpace(out) != string(wantJSON) {
			t.Errorf("map over %s: %s, want %s (one result per object, in key order)", u, out, wantJSON)
		}
	}
}

// checkBigResult runs blob(20 MB): the result must come back whole; the
// job's artifacts (listed by list) must hold it without --clean and be
// gone with --clean.
func checkBigResult(t *testing.T, list func() []string, extra ...string) {
	t.Helper()
	const n = 20_000_000
	want, _ := json.Marshal(fn.Blob(n))
	before := list()
	args := append([]string{"call", "--function", "blob", "--data", `{"n":20000000}`, "--quiet"}, extra...)
	if out := mustSubmit(t, append(args, "--clean")...); out != string(want)+"\n" {
		t.Fatalf("--clean: result of %d bytes, want %d bytes of blob", len(out), len(want)+1)
	}
	if after := list(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("--clean left artifacts behind: before %v, after %v", before, after)
	}
	if out := mustSubmit(t, args...); out != string(want)+"\n" {
		t.Fatalf("result of %d bytes, want %d bytes of blob", len(out), len(want)+1)
	}
	after := list()
	var added []string
	for _, k := range after {
		if !strings.Contains(fmt.Sprint(before), k) {
			added = append(added, k)
		}
	}
	if len(added) != 1 || !strings.HasSuffix(added[0], "/out/0.1") {
		t.Fatalf("without --clean the job should keep its result as out/0.1, new artifacts: %v", added)
	}
}

// checkBigInput maps echo over one input far above the inline limit: it
// must travel by reference (in/0 is stored) and come back intact.
func checkBigInput(t *testing.T, list func() []string, extra ...string) {
	t.Helper()
	x := strings.Repeat("large input ", 100_000/12)
	iter, _ := json.Marshal([]map[string]string{{"x": x}, {"x": "small"}})
	path := filepath.Join(t.TempDir(), "iter.json")
	if err := os.WriteFile(path, iter, 0o644); err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprint(list())
	out := mustSubmit(t, append([]string{"map", "--function", "echo", "--iterdata-from", path, "--quiet"}, extra...)...)
	want, _ := json.Marshal([]string{x, "small"})
	if strings.TrimSpace(out) != string(want) {
		t.Fatalf("echo of a large input: %d bytes back, want %d", len(out), len(want))
	}
	var in0 bool
	for _, k := range list() {
		if strings.HasSuffix(k, "/in/0") && !strings.Contains(before, k) {
			in0 = true
		}
	}
	if !in0 {
		t.Fatalf("the large input was not stored as in/0: %v", list())
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			out = append(out, filepath.ToSlash(p))
		}
		return nil
	})
	return out
}

// s3Store returns versitygw's store and a fresh bucket.
func s3Store(t *testing.T) (storage.Store, string) {
	t.Helper()
	c := storage.DefaultConfig()
	c.LocalRoot = t.TempDir()
	c.COS = storage.COSConfig{
		Endpoint: testenv.Require(t, testenv.S3Endpoint), Region: storage.DefaultRegion, PathStyle: true,
		AccessKey: testenv.Require(t, testenv.S3Access), SecretKey: storage.Secret(testenv.Require(t, testenv.S3Secret)),
	}
	r, err := storage.NewResolver(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, s, err := r.Parse("s3://placeholder")
	if err != nil {
		t.Fatal(err)
	}
	bucket := fmt.Sprintf("skein-dp-%d", time.Now().UnixNano()%1e9)
	if err := s.(storage.BucketMaker).MakeBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	return s, bucket
}

func s3Put(t *testing.T, s storage.Store, bucket, key string, body []byte) {
	t.Helper()
	if err := s.Put(context.Background(), bucket, key, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
}

func s3List(t *testing.T, s storage.Store, bucket, prefix string) []string {
	t.Helper()
	infos, err := s.List(context.Background(), bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		out = append(out, in.Key)
	}
	return out
}

// TestStorageS3ThroughServices runs the storage data path through a
// coordinator and runtimes on NATS with versitygw as the object store:
// the same word counts, 50 objects, 20 MB result with --clean, large
// input, and bad inputs; then wrong credentials, never printed.
func TestStorageS3ThroughServices(t *testing.T) {
	s, bucket := s3Store(t)
	secret := testenv.Require(t, testenv.S3Secret)
	t.Setenv(storage.EnvLocalRoot, t.TempDir())
	t.Setenv(storage.EnvEndpoint, testenv.Require(t, testenv.S3Endpoint))
	t.Setenv(storage.EnvPathStyle, "true")
	t.Setenv(storage.EnvAccessKey, testenv.Require(t, testenv.S3Access))
	t.Setenv(storage.EnvSecretKey, secret)
	t.Setenv(storage.EnvArtifacts, "s3://"+bucket+"/jobs/")
	t.Setenv(storage.EnvInlineLimit, "64KiB")

	text := filepath.Join(t.TempDir(), "text.txt")
	writeText(t, text, 3<<20)
	want := wcWords(t, text)
	body, err := os.ReadFile(text)
	if err != nil {
		t.Fatal(err)
	}
	s3Put(t, s, bucket, "books/text.txt", body)

	url := namespaced(t, testenv.Require(t, testenv.NATSURL))
	cluster(t, url, 2)
	bus := []string{"--bus", url}
	jobs := func() []string { return s3List(t, s, bucket, "jobs/") }

	t.Run("wordcount", func(t *testing.T) { checkWordCounts(t, "s3://"+bucket+"/books/text.txt", want, bus...) })
	t.Run("wordcount embedded", func(t *testing.T) {
		got, _ := sumList(t, mustSubmit(t, "map", "--function", "wordcount", "--iterdata", `["s3://`+bucket+`/books/text.txt"]`, "--chunk-n", "8", "--quiet"))
		if got != want {
			t.Errorf("embedded over s3: %d words, wc -w says %d", got, want)
		}
	})
	t.Run("prefix of 50 objects", func(t *testing.T) {
		checkFiftyObjects(t, func(i int, b []byte) { s3Put(t, s, bucket, fmt.Sprintf("many/obj-%02d.txt", i), b) }, "s3://"+bucket+"/many/")
	})
	t.Run("20 MB result and --clean", func(t *testing.T) { checkBigResult(t, jobs, bus...) })
	t.Run("large input by reference", func(t *testing.T) { checkBigInput(t, jobs, bus...) })
	t.Run("large iterdata stored by submit", func(t *testing.T) { checkStoredIterdata(t, url, jobs) })
	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct{ name, iter, want string }{
			{"missing key", `["s3://` + bucket + `/books/nope.txt"]`, "s3://" + bucket + "/books/nope.txt: object not found"},
			{"missing bucket", `["s3://no-such-bucket-skein/k.txt"]`, "s3://no-such-bucket-skein/k.txt"},
			{"empty prefix", `["s3://` + bucket + `/none/"]`, "s3://" + bucket + "/none/: matches no object"},
			{"malformed URL", `["s3://Bad_Bucket!/k"]`, "malformed storage URL"},
		} {
			t.Run(c.name, func(t *testing.T) {
				out, errOut, code := submit(t, append([]string{"map", "--function", "wordcount", "--iterdata", c.iter}, bus...)...)
				if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
					t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and a message holding %q", code, out, errOut, c.want)
				}
			})
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		wrong := "wrong-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		t.Setenv(storage.EnvSecretKey, wrong)
		u := "s3://" + bucket + "/books/text.txt"
		out, errOut, code := submit(t, "map", "--function", "wordcount", "--iterdata", `["`+u+`"]`, "--chunk-n", "2", "--log-level", "debug")
		if code != 2 || !strings.Contains(errOut, u) || !strings.Contains(errOut, "access denied") {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and access denied on %s", code, out, errOut, u)
		}
		for _, sec := range []string{wrong, secret} {
			if strings.Contains(out+errOut, sec) {
				t.Fatalf("a secret was printed:\n%s%s", out, errOut)
			}
		}
	})
}

// A chunk size that makes more than 100,000 chunks per GB is warned
// about (and still runs); a sensible one is not.
func TestTinyChunkSizeWarns(t *testing.T) {
	text := filepath.Join(t.TempDir(), "small.txt")
	if err := os.WriteFile(text, []byte("one two\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		size string
		warn bool
	}{{"4096", true}, {"1048576", false}} {
		out, errOut, code := submit(t, "mapreduce", "--function", "wordcount", "--reduce-function", "sum", "--iterdata", `["local://`+text+`"]`, "--chunk-size", c.size)
		if code != 0 || strings.TrimSpace(out) != "3" {
			t.Fatalf("--chunk-size %s: exit %d, out %q: %s", c.size, code, out, errOut)
		}
		if got := strings.Contains(errOut, "chunks (tasks) per GB"); got != c.warn {
			t.Fatalf("--chunk-size %s: warned %v, want %v; stderr:\n%s", c.size, got, c.warn, errOut)
		}
	}
}

// checkStoredIterdata maps echo over an iterdata larger than a spec holds,
// with storage configured: submit stores it as the job's input/spec (no
// chunk goes on the job log), the coordinator reads it from there, the
// result is the input, and the job's end removes the stored input.
func checkStoredIterdata(t *testing.T, url string, list func() []string) {
	t.Helper()
	elems := make([]string, 3000)
	for i := range elems {
		elems[i] = fmt.Sprintf("%04d-%s", i, strings.Repeat("y", 1000))
	}
	iter, _ := json.Marshal(elems)
	path := filepath.Join(t.TempDir(), "iter.json")
	if err := os.WriteFile(path, iter, 0o644); err != nil {
		t.Fatal(err)
	}
	id := submitNoWait(t, "map", "--function", "echo", "--iterdata-from", path, "--bus", url)
	if _, errOut, code := submit(t, "wait", id, "--bus", url, "--timeout", "90"); code != 0 {
		t.Fatalf("wait: exit %d: %s", code, errOut)
	}
	out, errOut, code := submit(t, "result", id, "--bus", url)
	if code != 0 || strings.TrimSpace(out) != string(iter) {
		t.Fatalf("result: exit %d, %d bytes (want the %d of the input); %s", code, len(out), len(iter), errOut)
	}
	if n := len(logRecordsOf(t, url, wire.JobInputSubject(id))); n != 0 {
		t.Errorf("%d input chunks on the job log: with storage configured the input goes there", n)
	}
	for _, k := range list() {
		if strings.Contains(k, id+"/input/") {
			t.Errorf("the job ended but its stored input %s is still there", k)
		}
	}
}

// logRecordsOf returns the records on a job-log subject from the start of
// the stream to its current end (a mark published now).
func logRecordsOf(t *testing.T, url, subject string) []bus.Message {
	t.Helper()
	var out []bus.Message
	onBus(t, url, func(ctx context.Context, b bus.Bus) {
		mark, err := b.PublishSeq(ctx, wire.JobLogMarkSubject("t"+strconv.FormatInt(time.Now().UnixNano(), 36)), bus.Message{})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := b.Subscribe(ctx, subject, bus.SubscribeOptions{From: 1, To: mark})
		if err != nil {
			t.Fatal(err)
		}
		for m := range ch {
			out = append(out, m)
		}
	})
	return out
}
