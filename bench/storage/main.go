// Command storage-bench measures map-over-chunks word counting against a
// single `wc -w` of the same file.
//
// It generates a text file (-size, default 1 GiB), times `LC_ALL=C wc -w`
// on it, then for each chunk_n in -chunks expands the object with
// pkg/partition and counts the words of all chunks in parallel goroutines
// (OpenChunk + fn.CountWords), checking every count against wc. It prints
// MB/s and the ratio to wc.
//
//	go run ./bench/storage -size 50M                 # local store
//	go run ./bench/storage -size 50M -store s3 -bucket bench   # S3: SKEIN_STORAGE_* env
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/pkg/datapath"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/partition"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

func main() {
	sizeFlag := flag.String("size", "1G", "size of the generated text (e.g. 50M, 1G)")
	dir := flag.String("dir", "", "directory for the text file (default: a temporary directory, removed at exit)")
	chunks := flag.String("chunks", "2,4,8", "chunk_n values to run")
	store := flag.String("store", "local", "local, or s3 (configured by the SKEIN_STORAGE_* variables)")
	bucket := flag.String("bucket", "skein-bench", "bucket for -store s3 (created if missing)")
	flag.Parse()
	if err := run(*sizeFlag, *dir, *chunks, *store, *bucket); err != nil {
		fmt.Fprintln(os.Stderr, "storage-bench:", err)
		os.Exit(1)
	}
}

func run(sizeFlag, dir, chunkList, store, bucket string) error {
	size, err := storage.ParseSize(sizeFlag)
	if err != nil {
		return fmt.Errorf("-size: %v", err)
	}
	var ns []int
	for _, f := range strings.Split(chunkList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-chunks: %q is not a positive integer", f)
		}
		ns = append(ns, n)
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "skein-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	path := filepath.Join(dir, "text.txt")
	t0 := time.Now()
	if err := generate(path, size); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "generated %s (%d bytes) in %s\n", path, size, time.Since(t0).Round(time.Millisecond))

	ctx := context.Background()
	cfg, err := storage.DefaultConfig().FromEnv()
	if err != nil {
		return err
	}
	cfg.LocalRoot = dir
	r, err := storage.NewResolver(cfg, nil)
	if err != nil {
		return err
	}
	url := "local://" + path
	if store == "s3" {
		url = "s3://" + bucket + "/bench/text.txt"
		u, s, err := r.Parse(url)
		if err != nil {
			return err
		}
		if bm, ok := s.(storage.BucketMaker); ok {
			if err := bm.MakeBucket(ctx, u.Bucket); err != nil {
				return err
			}
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		t0 := time.Now()
		err = s.Put(ctx, u.Bucket, u.Key, f, size)
		f.Close()
		if err != nil {
			return err
		}
		defer s.Delete(ctx, u.Bucket, u.Key)
		fmt.Fprintf(os.Stderr, "uploaded to %s in %s\n", url, time.Since(t0).Round(time.Millisecond))
	} else if store != "local" {
		return fmt.Errorf("-store: want local or s3, got %q", store)
	}

	t0 = time.Now()
	cmd := exec.Command("wc", "-w", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("wc -w: %v", err)
	}
	wcTime := time.Since(t0)
	want, _ := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	mb := float64(size) / 1e6
	fmt.Printf("size %.0f MB, %d words, store %s, GOMAXPROCS %d\n", mb, want, store, runtime.GOMAXPROCS(0))
	fmt.Printf("%-22s %10s %10s %8s\n", "run", "seconds", "MB/s", "vs wc")
	fmt.Printf("%-22s %10.3f %10.1f %8.2f\n", "wc -w (1 process)", wcTime.Seconds(), mb/wcTime.Seconds(), 1.0)

	for _, n := range ns {
		t0 := time.Now()
		items, err := partition.Expand(ctx, r, []wire.Value{wire.Value(strconv.Quote(url))}, partition.Options{ChunkN: n})
		if err != nil {
			return err
		}
		got, err := countParallel(ctx, r, items)
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if got != want {
			return fmt.Errorf("chunk_n=%d counted %d words, wc -w says %d", n, got, want)
		}
		fmt.Printf("%-22s %10.3f %10.1f %8.2f\n", fmt.Sprintf("chunk_n=%d goroutines", n), d.Seconds(), mb/d.Seconds(), wcTime.Seconds()/d.Seconds())
	}
	// The same through Skein itself: a map job of the wordcount built-in
	// on the embedded installation, chunks read by the runtime's slots.
	for _, n := range ns {
		d, got, err := skeinMap(ctx, cfg, url, n)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("skein map chunk_n=%d counted %d words, wc -w says %d", n, got, want)
		}
		fmt.Printf("%-22s %10.3f %10.1f %8.2f\n", fmt.Sprintf("skein map chunk_n=%d", n), d.Seconds(), mb/d.Seconds(), wcTime.Seconds()/d.Seconds())
	}
	return nil
}

// skeinMap runs `map --function wordcount --chunk-n n` over url on an
// embedded installation wired to storage, and sums the counts.
func skeinMap(ctx context.Context, cfg storage.Config, url string, n int) (time.Duration, int64, error) {
	p, err := datapath.FromConfig(cfg, nil)
	if err != nil {
		return 0, 0, err
	}
	ec := embedded.Config{}
	p.WireCoordinator(&ec.Coordinator)
	p.ConfigureRuntime(&ec.Runtime)
	c, err := embedded.Start(ctx, ec)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	t0 := time.Now()
	res, _, err := c.Client.Run(ctx, &wire.JobSpec{Kind: wire.JobMap, Function: "wordcount", Iterdata: wire.Value(`[` + strconv.Quote(url) + `]`), ChunkN: n})
	d := time.Since(t0)
	if err != nil {
		return 0, 0, err
	}
	var counts []int64
	if err := json.Unmarshal(res, &counts); err != nil {
		return 0, 0, fmt.Errorf("wordcount results %.100s: %v", res, err)
	}
	var total int64
	for _, c := range counts {
		total += c
	}
	return d, total, nil
}

func countParallel(ctx context.Context, r *storage.Resolver, items []partition.Item) (int64, error) {
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(items))
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := partition.OpenChunk(ctx, r, it.Obj)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			n, err := fn.CountWords(rc)
			if err != nil {
				errs <- err
				return
			}
			total.Add(n)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	return total.Load(), nil
}

// generate writes size bytes of lines of random words.
func generate(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(42, 42))
	words := make([][]byte, 4096)
	for i := range words {
		b := make([]byte, 1+rng.IntN(11))
		for j := range b {
			b[j] = byte('a' + rng.IntN(26))
		}
		words[i] = b
	}
	var n int64
	for n < size {
		line := rng.IntN(20)
		for k := 0; k < line && n < size-1; k++ {
			wd := words[rng.IntN(len(words))]
			if int64(len(wd))+n >= size-1 {
				break
			}
			if k > 0 {
				w.WriteByte(' ')
				n++
			}
			w.Write(wd)
			n += int64(len(wd))
		}
		if n < size {
			w.WriteByte('\n')
			n++
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
