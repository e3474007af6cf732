package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store is the object storage Skein reads inputs from and keeps job
// artifacts in. Implementations are safe for concurrent use.
//
// Keys are '/'-separated; a bucket is a flat namespace of keys. Every
// error wraps one of the sentinel errors below where one applies, and
// names the object's URL, never credentials.
type Store interface {
	// Get reads n bytes of key from offset off (n < 0: to the end). A range
	// past the end of the object is cut short; off at or past the end
	// gives an empty body; n == 0 gives an empty body without a request.
	// The caller closes the body.
	Get(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error)
	// Put stores size bytes read from r as key, replacing any object of
	// that name. size < 0 means unknown (the store may buffer).
	Put(ctx context.Context, bucket, key string, r io.Reader, size int64) error
	// Head describes key.
	Head(ctx context.Context, bucket, key string) (Info, error)
	// List describes every object whose key starts with prefix, sorted by
	// key; it follows the store's pagination to the end.
	List(ctx context.Context, bucket, prefix string) ([]Info, error)
	// Delete removes key. Deleting a key that does not exist is not an
	// error (the bucket must exist).
	Delete(ctx context.Context, bucket, key string) error
}

// VersionGetter is implemented by stores whose objects carry an entity tag
// that a read can be pinned to (S3, COS, and HTTP servers that send a
// strong ETag): GetVersion is Get if the object's ETag is still etag (as
// Info gives it), and an error wrapping ErrChanged if not, so that a read
// made of several requests never mixes two versions of an object.
type VersionGetter interface {
	GetVersion(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error)
}

// Pinnable reports whether a read can be pinned to an ETag that Info gave:
// the value of a strong entity tag, without its quotes. Info gives no ETag
// for a weak tag (W/"…" never matches the If-Match of a read) nor for one
// that is not a quoted entity tag at all.
func Pinnable(etag string) bool {
	if etag == "" {
		return false
	}
	for i := 0; i < len(etag); i++ {
		// etagc (RFC 9110, 8.8.3): visible characters but '"', and obs-text.
		if c := etag[i]; c < 0x21 || c == '"' || c == 0x7f {
			return false
		}
	}
	return true
}

// strongETag is the value of an ETag header that holds a strong entity tag
// ("…"), and "" for a missing, weak (W/"…") or malformed one, which no read
// can be pinned to.
func strongETag(header string) string {
	if len(header) < 2 || header[0] != '"' || header[len(header)-1] != '"' {
		return ""
	}
	if v := header[1 : len(header)-1]; Pinnable(v) {
		return v
	}
	return ""
}

// checkPin refuses a GetVersion of the object at url to an etag that
// cannot pin a read.
func checkPin(url, etag string) error {
	if !Pinnable(etag) {
		return opErr("get", url, detailed(ErrInvalid, fmt.Sprintf("cannot pin a read to ETag %q", etag)))
	}
	return nil
}

// BucketMaker is implemented by stores that can create a bucket. Artifacts
// uses it to create its bucket on first use when configured to.
type BucketMaker interface {
	MakeBucket(ctx context.Context, bucket string) error
}

// Info describes one object.
type Info struct {
	Key      string
	Size     int64
	Modified time.Time
	ETag     string
}

// Sentinel errors; test with errors.Is.
var (
	ErrNotFound     = errors.New("object not found")
	ErrNoBucket     = errors.New("bucket not found")
	ErrAccessDenied = errors.New("access denied (check the storage credentials)")
	ErrBadURL       = errors.New("malformed storage URL")
	ErrReadOnly     = errors.New("store is read-only")
	ErrUnsupported  = errors.New("operation not supported by this store")
	ErrInvalid      = errors.New("invalid argument")
	ErrNoConfig     = errors.New("storage is not configured for this URL")
	// ErrChanged: the object is no longer the version a read was pinned
	// to (VersionGetter): it was written again meanwhile.
	ErrChanged = errors.New("the object changed (written again since it was looked up)")
)

// Lasting reports an error that trying the operation again will not
// mend: a missing object or bucket, refused access, a bad URL or
// argument, an operation the store cannot do, or storage not configured.
// Anything else (unreachable, reset, timed out, 5xx) may pass.
func Lasting(err error) bool {
	for _, e := range []error{ErrNotFound, ErrNoBucket, ErrAccessDenied, ErrBadURL, ErrInvalid, ErrReadOnly, ErrUnsupported, ErrNoConfig, ErrChanged} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// How the data path rides out failures that are not Lasting (a server
// restarting, a network blip): the operation is tried again after a pause
// that starts at RideOutFirst and doubles up to RideOutMax, for up to
// RideOut in all. datapath (tasks' stored inputs, results, values, and
// with Patience a job's stored input) and partition (chunk reads, with
// Patience) use it.
var RideOut = 30 * time.Second

const (
	RideOutFirst = 250 * time.Millisecond
	RideOutMax   = 4 * time.Second
)

// Error is a failed storage operation on one URL.
type Error struct {
	Op  string // "get", "put", "head", "list", "delete", "resolve"
	URL string // the object's or prefix's URL; never carries credentials
	Err error
}

func (e *Error) Error() string {
	return "storage: " + e.Op + " " + e.URL + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func opErr(op, url string, err error) error {
	return &Error{Op: op, URL: url, Err: err}
}

// wrapped is an error that carries a sentinel and a detail message.
type wrapped struct {
	sentinel error
	detail   string
}

func (w *wrapped) Error() string {
	if w.detail == "" {
		return w.sentinel.Error()
	}
	return w.sentinel.Error() + ": " + w.detail
}

func (w *wrapped) Unwrap() error { return w.sentinel }

func detailed(sentinel error, detail string) error {
	return &wrapped{sentinel: sentinel, detail: detail}
}

type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyBody) Close() error             { return nil }

// Empty is an empty body.
func empty() io.ReadCloser { return emptyBody{} }

// ReadAll reads a whole object.
func ReadAll(ctx context.Context, s Store, bucket, key string) ([]byte, error) {
	body, err := s.Get(ctx, bucket, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}
