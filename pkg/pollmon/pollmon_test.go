package pollmon

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recordingStore records when each List call started.
type recordingStore struct {
	Store
	mu     sync.Mutex
	starts []time.Time
}

func (r *recordingStore) List(ctx context.Context, bucket, prefix string) ([]string, error) {
	r.mu.Lock()
	r.starts = append(r.starts, time.Now())
	r.mu.Unlock()
	return r.Store.List(ctx, bucket, prefix)
}

// TestWatchRealFiles runs writers that finish tasks at random times over
// about half a second and a Monitor polling the directory every 50 ms.
func TestWatchRealFiles(t *testing.T) {
	testWatch(t, func(t *testing.T) (Store, string) { return DirStore{Root: t.TempDir()}, "b" })
}

// testWatch runs the watch test over the stores newStore makes.
func testWatch(t *testing.T, newStore func(t *testing.T) (Store, string)) {
	for _, read := range []bool{false, true} {
		name := "list-only"
		if read {
			name = "read-status"
		}
		t.Run(name, func(t *testing.T) {
			inner, bucket := newStore(t)
			store := &recordingStore{Store: inner}
			const total = 100
			interval := 50 * time.Millisecond
			cfg := Config{Bucket: bucket, Prefix: "skein/jobs", Interval: interval, ReadStatus: read}
			m, err := New(store, cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			// A status object of another job must not count.
			if err := WriteStatus(ctx, store, bucket, "skein/jobs", Status{Job: "other", Task: 0, State: "done"}); err != nil {
				t.Fatal(err)
			}
			written := make([]time.Time, total) // just before each Put
			putDone := make([]time.Time, total)
			var wg sync.WaitGroup
			start := time.Now()
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for i := w; i < total; i += 8 {
						time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond)
						now := time.Now()
						written[i] = now
						st := Status{Job: "j1", Task: i, Attempt: 1, State: "done", Worker: "w", Finished: now.UnixNano()}
						if err := WriteStatus(ctx, store, bucket, "skein/jobs", st); err != nil {
							t.Error(err)
						}
						putDone[i] = time.Now()
					}
				}(w)
			}

			got := make(map[int]Completion)
			err = m.Watch(ctx, "j1", total, func(c Completion) {
				if _, dup := got[c.Task]; dup {
					t.Errorf("task %d reported twice", c.Task)
				}
				got[c.Task] = c
			})
			elapsed := time.Since(start)
			wg.Wait()
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if len(got) != total {
				t.Fatalf("reported %d tasks, want %d", len(got), total)
			}
			var worst time.Duration
			starts := store.starts // Watch has returned: no more calls
			for i := 0; i < total; i++ {
				c, ok := got[i]
				if !ok {
					t.Fatalf("task %d not reported", i)
				}
				lat := c.Noticed.Sub(written[i])
				if lat < 0 {
					t.Errorf("task %d noticed %v before it was written", i, -lat)
				}
				worst = max(worst, lat)
				// The first listing that started after the Put returned
				// must have reported the task: it was noticed before the
				// listing after that one started.
				for k, st := range starts {
					if st.After(putDone[i]) {
						if k+1 < len(starts) && c.Noticed.After(starts[k+1]) {
							t.Errorf("task %d written before listing %d but noticed only after listing %d started", i, k, k+1)
						}
						break
					}
				}
				if c.Key != "skein/jobs/j1/status/"+itoa(i)+".json" {
					t.Errorf("task %d key %q", i, c.Key)
				}
				if read {
					if c.Status == nil || c.Status.Task != i || c.Status.State != "done" || c.Status.Finished != written[i].UnixNano() {
						t.Errorf("task %d status %+v", i, c.Status)
					}
				} else if c.Status != nil {
					t.Errorf("task %d has a status without ReadStatus", i)
				}
			}
			s := m.Stats()
			maxLists := int64(elapsed/interval) + 2
			if s.Lists != int64(len(starts)) {
				t.Errorf("Stats counts %d listings, the store saw %d", s.Lists, len(starts))
			}
			if s.Lists < 2 || s.Lists > maxLists {
				t.Errorf("%d listings in %v at %v, want 2..%d", s.Lists, elapsed, interval, maxLists)
			}
			if read && s.Gets != total || !read && s.Gets != 0 {
				t.Errorf("Gets = %d (read=%v)", s.Gets, read)
			}
			if s.Requests() != s.Lists+s.Gets || s.Keys < total {
				t.Errorf("stats %+v", s)
			}
			t.Logf("%d tasks in %v: %d lists, %d gets, %d keys listed, worst latency %v", total, elapsed, s.Lists, s.Gets, s.Keys, worst)
		})
	}
}

func itoa(i int) string {
	return StatusKey("", "x", i)[len("x/status/") : len(StatusKey("", "x", i))-len(".json")]
}

func TestWatchStopsOnContext(t *testing.T) {
	m, err := New(DirStore{Root: t.TempDir()}, Config{Bucket: "b", Interval: 10 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = m.Watch(ctx, "j", 5, func(Completion) { t.Error("nothing to report") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch = %v, want the deadline", err)
	}
	if n := m.Stats().Lists; n < 3 {
		t.Errorf("%d listings in 100 ms at 10 ms", n)
	}
}

type failingLister struct{}

func (failingLister) List(context.Context, string, string) ([]string, error) {
	return nil, errors.New("connection refused")
}

func TestWatchListError(t *testing.T) {
	m, err := New(failingLister{}, Config{Bucket: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Watch(context.Background(), "j", 1, func(Completion) {})
	if err == nil || !strings.Contains(err.Error(), "list b/j/status/") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Watch = %v", err)
	}
	if _, err := New(failingLister{}, Config{Bucket: "b", ReadStatus: true}, nil); err == nil {
		t.Error("ReadStatus over a store that cannot Get was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{Interval: -time.Second, Prefix: "/abs"}.Validate()
	for _, w := range []string{"Bucket", "Interval", "Prefix"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate = %v, does not name %s", err, w)
		}
	}
	c := DefaultConfig()
	c.Bucket = "b"
	if err := c.Validate(); err != nil || c.Interval != 2*time.Second {
		t.Errorf("default config: %v, %v", err, c.Interval)
	}
}

func TestParseStatusKey(t *testing.T) {
	tests := []struct {
		key  string
		want int
		ok   bool
	}{
		{"p/j/status/12.json", 12, true},
		{"j/status/0.json", 0, true},
		{"p/j/status/012.json", 0, false},
		{"p/j/status/-1.json", 0, false},
		{"p/j/status/x.json", 0, false},
		{"p/j/status/1.txt", 0, false},
		{"p/j/status/a/1.json", 0, false},
		{"p/j/result/1.json", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseStatusKey(tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseStatusKey(%q) = %d, %v", tt.key, got, ok)
		}
	}
}

func TestDirStoreRejectsEscapes(t *testing.T) {
	d := DirStore{Root: t.TempDir()}
	ctx := context.Background()
	for _, k := range []string{"../x", "a/../../x", "/abs", "a//b", ""} {
		if err := d.Put(ctx, "b", k, nil); err == nil {
			t.Errorf("Put key %q accepted", k)
		}
	}
	if err := d.Put(ctx, "../b", "k", nil); err == nil {
		t.Error("Put bucket ../b accepted")
	}
	if err := WriteStatus(ctx, d, "b", "p", Status{Job: "../j"}); err == nil {
		t.Error("WriteStatus job ../j accepted")
	}
	if keys, err := d.List(ctx, "b", "nothing/here/"); err != nil || len(keys) != 0 {
		t.Errorf("List of a missing prefix = %v, %v", keys, err)
	}
}

func FuzzParseStatusKey(f *testing.F) {
	f.Add("p/j/status/3.json", 3)
	f.Add("x", 0)
	f.Fuzz(func(t *testing.T, key string, n int) {
		if i, ok := ParseStatusKey(key); ok && (i < 0 || StatusKey("", "j", i)[len("j/status/"):] != key[strings.LastIndex(key, "/")+1:]) {
			t.Errorf("ParseStatusKey(%q) = %d does not round-trip", key, i)
		}
		if n >= 0 {
			if i, ok := ParseStatusKey(StatusKey("pre/fix", "job", n)); !ok || i != n {
				t.Errorf("round trip of %d = %d, %v", n, i, ok)
			}
		}
	})
}
