package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Artifacts keeps job artifacts -- task inputs and results too large to
// ride on the bus -- under one prefix per job:
//
//	<ArtifactsURL><job>/<name>      e.g. local://skein-artifacts/skein-jobs/j42/out/7.1
//
// A reference is the artifact's URL as a string; any process with the
// same configuration can read it back. Clean removes everything of a job.
// Safe for concurrent use.
type Artifacts struct {
	store  Store
	base   URL // bucket and prefix (Key ends in '/' or is empty)
	limit  int64
	create bool

	mu      sync.Mutex
	created bool
}

// NewArtifacts returns the artifacts store of r's configuration
// (ArtifactsURL, InlineLimit, CreateArtifactsBucket).
func NewArtifacts(r *Resolver) (*Artifacts, error) {
	cfg := r.Config()
	u, err := ParseURL(cfg.ArtifactsURL)
	if err != nil {
		return nil, fmt.Errorf("storage config: artifacts_url: %w", err)
	}
	if u.Key != "" && !strings.HasSuffix(u.Key, "/") {
		u.Key += "/"
	}
	s, err := r.Store(u)
	if err != nil {
		return nil, err
	}
	return &Artifacts{store: s, base: u, limit: cfg.InlineLimit, create: cfg.CreateArtifactsBucket}, nil
}

// InlineLimit is the configured threshold in bytes.
func (a *Artifacts) InlineLimit() int64 { return a.limit }

// Inline reports whether a value of size bytes may travel inside a bus
// message (size <= InlineLimit); larger values go by reference.
func (a *Artifacts) Inline(size int) bool { return int64(size) <= a.limit }

// JobURL is the URL of the prefix holding job's artifacts.
func (a *Artifacts) JobURL(job string) string {
	return a.base.Object(a.base.Key + job + "/").String()
}

// InputName and ResultName are the conventional artifact names of a
// task's input and of one attempt's result.
func InputName(task int) string           { return fmt.Sprintf("in/%d", task) }
func ResultName(task, attempt int) string { return fmt.Sprintf("out/%d.%d", task, attempt) }

func checkID(what, s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 200 {
		return fmt.Errorf("%w: artifact %s %q: must be 1 to 200 characters, not . or ..", ErrInvalid, what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: artifact %s %q: may hold only letters, digits, '-', '_' and '.'", ErrInvalid, what, s)
		}
	}
	return nil
}

func (a *Artifacts) key(job, name string) (string, error) {
	if err := checkID("job id", job); err != nil {
		return "", err
	}
	for _, seg := range strings.Split(name, "/") {
		if err := checkID("name", seg); err != nil {
			return "", err
		}
	}
	return a.base.Key + job + "/" + name, nil
}

// Put stores data as artifact name of job and returns its reference.
func (a *Artifacts) Put(ctx context.Context, job, name string, data []byte) (string, error) {
	return a.PutReader(ctx, job, name, bytes.NewReader(data), int64(len(data)))
}

// PutReader stores size bytes from r as artifact name of job and returns
// its reference.
func (a *Artifacts) PutReader(ctx context.Context, job, name string, r io.Reader, size int64) (string, error) {
	key, err := a.key(job, name)
	if err != nil {
		return "", err
	}
	if err := a.ensureBucket(ctx); err != nil {
		return "", err
	}
	if err := a.store.Put(ctx, a.base.Bucket, key, r, size); err != nil {
		return "", err
	}
	return a.base.Object(key).String(), nil
}

// ensureBucket creates the bucket on first use when configured to. It
// probes with a listing that matches nothing rather than retrying a failed
// Put: an HTTP client may still be reading the first body when the
// server's early "no such bucket" answer arrives.
func (a *Artifacts) ensureBucket(ctx context.Context) error {
	if !a.create {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.created {
		return nil
	}
	_, err := a.store.List(ctx, a.base.Bucket, a.base.Key+".skein-probe/")
	if errors.Is(err, ErrNoBucket) {
		bm, ok := a.store.(BucketMaker)
		if !ok {
			return opErr("make-bucket", a.base.String(), ErrUnsupported)
		}
		err = bm.MakeBucket(ctx, a.base.Bucket)
	}
	if err != nil {
		return err
	}
	a.created = true
	return nil
}

// parseRef checks that ref names an artifact of this store (a task
// message must not make a runtime read anything else).
func (a *Artifacts) parseRef(ref string) (string, error) {
	u, err := ParseURL(ref)
	if err != nil {
		return "", err
	}
	if u.Scheme != a.base.Scheme || u.Bucket != a.base.Bucket || !strings.HasPrefix(u.Key, a.base.Key) || u.IsPrefix() {
		return "", fmt.Errorf("%w: %q is not an artifact under %s", ErrInvalid, Redact(ref), a.base)
	}
	return u.Key, nil
}

// Open returns a reader over the artifact ref.
func (a *Artifacts) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	key, err := a.parseRef(ref)
	if err != nil {
		return nil, err
	}
	return a.store.Get(ctx, a.base.Bucket, key, 0, -1)
}

// Get reads the whole artifact ref.
func (a *Artifacts) Get(ctx context.Context, ref string) ([]byte, error) {
	body, err := a.Open(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, opErr("get", Redact(ref), err)
	}
	return b, nil
}

// List returns the artifacts of job, sorted by key.
func (a *Artifacts) List(ctx context.Context, job string) ([]Info, error) {
	if err := checkID("job id", job); err != nil {
		return nil, err
	}
	infos, err := a.store.List(ctx, a.base.Bucket, a.base.Key+job+"/")
	if errors.Is(err, ErrNoBucket) {
		return nil, nil // nothing was ever stored
	}
	return infos, err
}

// Clean deletes every artifact of job (everything under its prefix). A
// job without artifacts is not an error.
func (a *Artifacts) Clean(ctx context.Context, job string) error {
	return a.CleanUnder(ctx, job, "")
}

// CleanUnder deletes the artifacts of job whose names start with sub
// (e.g. "in/": the task inputs); "" deletes everything of the job.
func (a *Artifacts) CleanUnder(ctx context.Context, job, sub string) error {
	infos, err := a.List(ctx, job)
	if err != nil {
		return err
	}
	if sub != "" {
		prefix := a.base.Key + job + "/" + sub
		kept := infos[:0]
		for _, in := range infos {
			if strings.HasPrefix(in.Key, prefix) {
				kept = append(kept, in)
			}
		}
		infos = kept
	}
	const workers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	keys := make(chan string)
	for range min(workers, len(infos)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if err := a.store.Delete(ctx, a.base.Bucket, k); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, in := range infos {
		keys <- in.Key
	}
	close(keys)
	wg.Wait()
	return errors.Join(errs...)
}
