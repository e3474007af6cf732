package pollmon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DirStore keeps objects as files under Root: bucket b, key k is the file
// Root/b/k. Writes are atomic (a temporary file renamed into place), so a
// listing never sees a half-written object.
type DirStore struct {
	Root string
}

func (d DirStore) path(bucket, key string) (string, error) {
	if err := validName(bucket); err != nil {
		return "", fmt.Errorf("bucket: %w", err)
	}
	clean := filepath.ToSlash(filepath.Clean("/" + key))[1:]
	if key == "" || clean != key {
		return "", fmt.Errorf("key %q is not a clean relative path", key)
	}
	return filepath.Join(d.Root, bucket, filepath.FromSlash(key)), nil
}

// Put writes key atomically.
func (d DirStore) Put(ctx context.Context, bucket, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(bucket, key)
	if err != nil {
		return fmt.Errorf("dirstore: put: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("dirstore: put %s/%s: %w", bucket, key, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("dirstore: put %s/%s: %w", bucket, key, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("dirstore: put %s/%s: %w", bucket, key, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("dirstore: put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Get reads key.
func (d DirStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(bucket, key)
	if err != nil {
		return nil, fmt.Errorf("dirstore: get: %w", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("dirstore: get %s/%s: %w", bucket, key, err)
	}
	return b, nil
}

// List walks the directory holding prefix and returns the keys starting
// with prefix. A missing bucket or prefix lists nothing.
func (d DirStore) List(ctx context.Context, bucket, prefix string) ([]string, error) {
	if err := validName(bucket); err != nil {
		return nil, fmt.Errorf("dirstore: list: bucket: %w", err)
	}
	root := filepath.Join(d.Root, bucket)
	dir := prefix[:strings.LastIndex(prefix, "/")+1] // walk from the prefix's directory
	start := filepath.Join(root, filepath.FromSlash(dir))
	if !strings.HasPrefix(start, root) {
		return nil, fmt.Errorf("dirstore: list: prefix %q leaves the bucket", prefix)
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if k := filepath.ToSlash(rel); strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dirstore: list %s/%s: %w", bucket, prefix, err)
	}
	return keys, nil
}
