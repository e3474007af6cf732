package pollmon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Lister lists the keys under a prefix. The Monitor needs only this.
type Lister interface {
	// List returns every key in bucket that starts with prefix, in any
	// order. It must be safe for concurrent use.
	List(ctx context.Context, bucket, prefix string) ([]string, error)
}

// Putter writes an object (runtimes, through WriteStatus).
type Putter interface {
	Put(ctx context.Context, bucket, key string, data []byte) error
}

// Getter reads an object; the Monitor uses it only with Config.ReadStatus.
type Getter interface {
	Get(ctx context.Context, bucket, key string) ([]byte, error)
}

// Status is the body of a task's status object.
type Status struct {
	Job      string `json:"job"`
	Task     int    `json:"task"`
	Attempt  int    `json:"attempt"`
	State    string `json:"state"` // "done" or "failed"
	Worker   string `json:"worker,omitempty"`
	Started  int64  `json:"started,omitempty"`  // unix ns
	Finished int64  `json:"finished,omitempty"` // unix ns, the function's end
}

// StatusPrefix is where a job's status objects live: "<prefix>/<job>/status/".
func StatusPrefix(prefix, job string) string {
	return path.Join(prefix, job, "status") + "/"
}

// StatusKey is task's status object key: "<prefix>/<job>/status/<task>.json".
func StatusKey(prefix, job string, task int) string {
	return StatusPrefix(prefix, job) + strconv.Itoa(task) + ".json"
}

// ParseStatusKey returns the task index of a status object key, or false
// for any other key.
func ParseStatusKey(key string) (int, bool) {
	i := strings.LastIndex(key, "/status/")
	if i < 0 {
		return 0, false
	}
	name, ok := strings.CutSuffix(key[i+len("/status/"):], ".json")
	if !ok || name == "" || strings.Contains(name, "/") {
		return 0, false
	}
	n, err := strconv.Atoi(name)
	if err != nil || n < 0 || strconv.Itoa(n) != name {
		return 0, false
	}
	return n, true
}

// WriteStatus writes st's status object (the runtime side).
func WriteStatus(ctx context.Context, store Putter, bucket, prefix string, st Status) error {
	if err := validName(st.Job); err != nil {
		return fmt.Errorf("pollmon: write status: job: %w", err)
	}
	if st.Task < 0 {
		return fmt.Errorf("pollmon: write status: task %d is negative", st.Task)
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("pollmon: write status of %s/%d: %w", st.Job, st.Task, err)
	}
	key := StatusKey(prefix, st.Job, st.Task)
	if err := store.Put(ctx, bucket, key, data); err != nil {
		return fmt.Errorf("pollmon: write status %s/%s: %w", bucket, key, err)
	}
	return nil
}

func validName(s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00") {
		return fmt.Errorf("%q is not a valid name (empty, dot, or holds a slash)", s)
	}
	return nil
}

// Config tunes a Monitor.
type Config struct {
	Bucket string
	// Prefix is the storage prefix status objects live under (may be "").
	Prefix string
	// Interval is the time between two listings (2 s by default).
	Interval time.Duration
	// ReadStatus makes the Monitor Get each new status object to report its
	// content (state, attempt, finish time); the store must be a Getter.
	ReadStatus bool
}

// DefaultConfig polls every 2 s and reads no status bodies.
func DefaultConfig() Config { return Config{Interval: 2 * time.Second} }

func (c *Config) setDefaults() {
	if c.Interval == 0 {
		c.Interval = DefaultConfig().Interval
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("pollmon: Bucket is empty"))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("pollmon: Interval %v is negative", c.Interval))
	} else if c.Interval > 0 && c.Interval < time.Millisecond {
		errs = append(errs, fmt.Errorf("pollmon: Interval %v is under 1ms", c.Interval))
	}
	if strings.HasPrefix(c.Prefix, "/") {
		errs = append(errs, fmt.Errorf("pollmon: Prefix %q starts with a slash", c.Prefix))
	}
	return errors.Join(errs...)
}

// Completion is one task whose status object a listing found.
type Completion struct {
	Task int
	Key  string
	// Noticed is when the listing that found the object returned.
	Noticed time.Time
	// Status is the object's content with Config.ReadStatus, else nil.
	Status *Status
}

// Stats counts the storage calls a Monitor made.
type Stats struct {
	Lists int64 // List calls
	Gets  int64 // Get calls (ReadStatus)
	Keys  int64 // keys returned by all List calls together
}

// Requests is the total number of storage calls.
func (s Stats) Requests() int64 { return s.Lists + s.Gets }

// Monitor polls a store for status objects. One Monitor may watch several
// jobs at once; its Stats add up all of them.
type Monitor struct {
	store Lister
	get   Getter
	cfg   Config
	log   *slog.Logger

	lists, gets, keys atomic.Int64
}

// New returns a Monitor over store. log may be nil.
func New(store Lister, cfg Config, log *slog.Logger) (*Monitor, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Monitor{store: store, cfg: cfg, log: log}
	if cfg.ReadStatus {
		g, ok := store.(Getter)
		if !ok {
			return nil, fmt.Errorf("pollmon: ReadStatus is set but the store (%T) cannot Get", store)
		}
		m.get = g
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m, nil
}

// Stats returns the calls made so far.
func (m *Monitor) Stats() Stats {
	return Stats{Lists: m.lists.Load(), Gets: m.gets.Load(), Keys: m.keys.Load()}
}

// Watch lists job's status prefix at once and then every interval, and
// calls fn (from Watch's goroutine, in task order within one listing) for
// every task whose status object is new. It returns nil once total
// distinct tasks were reported, ctx's error when ctx ends first, and a
// wrapped storage error when a List fails (a failed Get is logged and the
// task is reported without Status).
func (m *Monitor) Watch(ctx context.Context, job string, total int, fn func(Completion)) error {
	if err := validName(job); err != nil {
		return fmt.Errorf("pollmon: watch: job: %w", err)
	}
	if total < 0 {
		return fmt.Errorf("pollmon: watch %s: total %d is negative", job, total)
	}
	prefix := StatusPrefix(m.cfg.Prefix, job)
	seen := make(map[int]bool, total)
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if len(seen) >= total {
			return nil
		}
		keys, err := m.store.List(ctx, m.cfg.Bucket, prefix)
		m.lists.Add(1)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("pollmon: list %s/%s: %w", m.cfg.Bucket, prefix, err)
		}
		noticed := time.Now()
		m.keys.Add(int64(len(keys)))
		var fresh []Completion
		for _, k := range keys {
			i, ok := ParseStatusKey(k)
			if !ok || seen[i] || !strings.HasPrefix(k, prefix) {
				continue
			}
			seen[i] = true
			fresh = append(fresh, Completion{Task: i, Key: k, Noticed: noticed})
		}
		sort.Slice(fresh, func(a, b int) bool { return fresh[a].Task < fresh[b].Task })
		for _, c := range fresh {
			if m.get != nil {
				c.Status = m.read(ctx, c.Key)
			}
			fn(c)
		}
		if len(seen) >= total {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (m *Monitor) read(ctx context.Context, key string) *Status {
	m.gets.Add(1)
	data, err := m.get.Get(ctx, m.cfg.Bucket, key)
	if err != nil {
		m.log.Warn("pollmon: read status object", "bucket", m.cfg.Bucket, "key", key, "err", err)
		return nil
	}
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		m.log.Warn("pollmon: status object is not valid JSON", "bucket", m.cfg.Bucket, "key", key, "err", err)
		return nil
	}
	return &st
}
