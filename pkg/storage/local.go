package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Local is a Store on a local directory: a bucket is a subdirectory of
// Root and a key a path below it ('/' separates directories). With an
// empty bucket the Root itself holds the keys (this is how absolute
// local:///path URLs are served, with Root "/").
//
// Put writes a temporary file and renames it, so readers never see a
// partial object; Delete removes directories left empty up to the bucket.
type Local struct {
	root   string
	scheme string
	log    *slog.Logger
}

// NewLocal returns a store rooted at the directory root (it need not
// exist yet). log may be nil.
func NewLocal(root string, log *slog.Logger) (*Local, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("storage: local root must be an absolute path, got %q", root)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Local{root: filepath.Clean(root), scheme: SchemeLocal, log: log}, nil
}

// Root returns the store's root directory.
func (l *Local) Root() string { return l.root }

func (l *Local) url(bucket, key string) string {
	if bucket == "" {
		// Absolute mode: the key is relative to the root.
		return "local://" + filepath.ToSlash(filepath.Join(l.root, key))
	}
	return URL{Scheme: l.scheme, Bucket: bucket, Key: key}.String()
}

// bucketDir checks bucket and returns its directory.
func (l *Local) bucketDir(op, bucket, key string) (string, error) {
	if bucket == "" {
		return l.root, nil
	}
	if strings.ContainsAny(bucket, `/\`) || bucket == "." || bucket == ".." {
		return "", opErr(op, l.url(bucket, key), detailed(ErrInvalid, "bad bucket name"))
	}
	dir := filepath.Join(l.root, bucket)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		if errors.Is(err, fs.ErrPermission) {
			return "", opErr(op, l.url(bucket, key), ErrAccessDenied)
		}
		return "", opErr(op, l.url(bucket, key), ErrNoBucket)
	}
	return dir, nil
}

// path checks key and returns its file name.
func (l *Local) path(op, bucket, key string) (string, error) {
	dir, err := l.bucketDir(op, bucket, key)
	if err != nil {
		return "", err
	}
	if key == "" || strings.HasSuffix(key, "/") {
		return "", opErr(op, l.url(bucket, key), detailed(ErrInvalid, "a key must not be empty or end in '/'"))
	}
	if msg := checkKey(key); msg != "" || strings.Contains(key, `\`) || strings.Contains(key, "\x00") {
		if msg == "" {
			msg = "bad character"
		}
		return "", opErr(op, l.url(bucket, key), detailed(ErrInvalid, "key "+msg))
	}
	return filepath.Join(dir, filepath.FromSlash(key)), nil
}

func (l *Local) fsErr(op, bucket, key string, err error) error {
	u := l.url(bucket, key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return opErr(op, u, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return opErr(op, u, ErrAccessDenied)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the URL already names the file
	}
	return opErr(op, u, err)
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, opErr("get", l.url(bucket, key), detailed(ErrInvalid, fmt.Sprintf("negative offset %d", off)))
	}
	p, err := l.path("get", bucket, key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, l.fsErr("get", bucket, key, err)
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		return nil, opErr("get", l.url(bucket, key), ErrNotFound)
	}
	if n == 0 {
		f.Close()
		return empty(), nil
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, l.fsErr("get", bucket, key, err)
		}
	}
	if n < 0 {
		return f, nil
	}
	return &limitedFile{Reader: io.LimitReader(f, n), f: f}, nil
}

type limitedFile struct {
	io.Reader
	f *os.File
}

func (lf *limitedFile) Close() error { return lf.f.Close() }

// Put implements Store.
func (l *Local) Put(ctx context.Context, bucket, key string, r io.Reader, size int64) error {
	p, err := l.path("put", bucket, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return l.fsErr("put", bucket, key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".skein-put-*")
	if err != nil {
		return l.fsErr("put", bucket, key, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	written, err := io.Copy(tmp, ctxReader{ctx, r})
	if err != nil {
		return opErr("put", l.url(bucket, key), err)
	}
	if size >= 0 && written != size {
		return opErr("put", l.url(bucket, key), detailed(ErrInvalid, fmt.Sprintf("read %d bytes, expected %d", written, size)))
	}
	if err := tmp.Close(); err != nil {
		return l.fsErr("put", bucket, key, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return l.fsErr("put", bucket, key, err)
	}
	done = true
	l.log.Debug("put object", "url", l.url(bucket, key), "size", written)
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Head implements Store.
func (l *Local) Head(ctx context.Context, bucket, key string) (Info, error) {
	p, err := l.path("head", bucket, key)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return Info{}, l.fsErr("head", bucket, key, err)
	}
	if !st.Mode().IsRegular() {
		return Info{}, opErr("head", l.url(bucket, key), ErrNotFound)
	}
	return Info{Key: key, Size: st.Size(), Modified: st.ModTime()}, nil
}

// List implements Store. Only regular files are listed; the walk starts
// at the deepest directory the prefix names.
func (l *Local) List(ctx context.Context, bucket, prefix string) ([]Info, error) {
	dir, err := l.bucketDir("list", bucket, prefix)
	if err != nil {
		return nil, err
	}
	if strings.Contains(prefix, `\`) || strings.Contains(prefix, "\x00") {
		return nil, opErr("list", l.url(bucket, prefix), detailed(ErrInvalid, "bad character in prefix"))
	}
	if prefix != "" {
		if msg := checkKey(prefix); msg != "" {
			return nil, opErr("list", l.url(bucket, prefix), detailed(ErrInvalid, "prefix "+msg))
		}
	}
	start := dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(dir, filepath.FromSlash(prefix[:i]))
	}
	var out []Info
	err = filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, rerr := filepath.Rel(dir, p)
		if rerr != nil {
			return rerr
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip directories that cannot hold a key with the prefix.
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) || strings.HasPrefix(d.Name(), ".skein-put-") {
			return nil
		}
		info, ierr := d.Info()
		if ierr != nil {
			return nil // removed while listing
		}
		out = append(out, Info{Key: key, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, l.fsErr("list", bucket, prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, bucket, key string) error {
	p, err := l.path("delete", bucket, key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l.fsErr("delete", bucket, key, err)
	}
	// Remove directories the key leaves empty, up to the bucket.
	dir, _ := l.bucketDir("delete", bucket, key)
	for d := filepath.Dir(p); d != dir && strings.HasPrefix(d, dir+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	return nil
}

// MakeBucket implements BucketMaker.
func (l *Local) MakeBucket(ctx context.Context, bucket string) error {
	if bucket == "" || strings.ContainsAny(bucket, `/\`) || bucket == "." || bucket == ".." {
		return opErr("make-bucket", l.url(bucket, ""), detailed(ErrInvalid, "bad bucket name"))
	}
	if err := os.MkdirAll(filepath.Join(l.root, bucket), 0o755); err != nil {
		return l.fsErr("make-bucket", bucket, "", err)
	}
	return nil
}
