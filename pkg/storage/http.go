package storage

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// HTTP is a read-only Store over http(s) URLs: the bucket is host[:port]
// and the key the escaped path (and query). Get sends a Range request; a
// server that ignores Range is handled by skipping and limiting the body.
// List, Put and Delete fail with ErrUnsupported / ErrReadOnly.
type HTTP struct {
	client  *http.Client
	scheme  string
	timeout time.Duration
	log     *slog.Logger
}

// NewHTTP returns a store for scheme "http" or "https". timeout bounds the
// wait for response headers. log may be nil.
func NewHTTP(scheme string, timeout time.Duration, log *slog.Logger) *HTTP {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = timeout
	return &HTTP{client: &http.Client{Transport: tr}, scheme: scheme, timeout: timeout, log: log}
}

func (h *HTTP) url(bucket, key string) string {
	return URL{Scheme: h.scheme, Bucket: bucket, Key: key}.String()
}

func (h *HTTP) do(ctx context.Context, method, op, bucket, key string, hdr http.Header) (*http.Response, error) {
	u := h.url(bucket, key)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, opErr(op, u, detailed(ErrBadURL, err.Error()))
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, opErr(op, u, ctx.Err())
		}
		return nil, opErr(op, u, unwrapURLError(err))
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent, http.StatusRequestedRangeNotSatisfiable:
		return resp, nil
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusGone:
		return nil, opErr(op, u, ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, opErr(op, u, detailed(ErrAccessDenied, resp.Status))
	case http.StatusPreconditionFailed: // only GetVersion sends a precondition (If-Match)
		return nil, opErr(op, u, detailed(ErrChanged, "its ETag is no longer "+hdr.Get("If-Match")))
	}
	return nil, opErr(op, u, fmt.Errorf("HTTP %s", resp.Status))
}

// Get implements Store.
func (h *HTTP) Get(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	return h.get(ctx, bucket, key, "", off, n)
}

// GetVersion implements VersionGetter with If-Match: a server that keeps
// entity tags answers 412 when the object's is no longer etag (one that
// ignores the header cannot be pinned).
func (h *HTTP) GetVersion(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	if err := checkPin(h.url(bucket, key), etag); err != nil {
		return nil, err
	}
	return h.get(ctx, bucket, key, etag, off, n)
}

func (h *HTTP) get(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, opErr("get", h.url(bucket, key), detailed(ErrInvalid, fmt.Sprintf("negative offset %d", off)))
	}
	if n == 0 {
		return empty(), nil
	}
	hdr := http.Header{}
	if etag != "" {
		hdr.Set("If-Match", `"`+etag+`"`)
	}
	switch {
	case n > 0:
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := h.do(ctx, http.MethodGet, "get", bucket, key, hdr)
	if err != nil {
		return nil, err
	}
	// A server that ignores If-Match answers with the object it has: its
	// ETag, when it sends one, tells whether that is the version pinned.
	if got := resp.Header.Get("ETag"); etag != "" && got != "" && strongETag(got) != etag {
		resp.Body.Close()
		return nil, opErr("get", h.url(bucket, key), detailed(ErrChanged, fmt.Sprintf("its ETag is no longer %q but %s", etag, got)))
	}
	switch resp.StatusCode {
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return empty(), nil
	case http.StatusPartialContent:
		return resp.Body, nil
	}
	// 200: the server sent the whole object.
	if off > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			resp.Body.Close()
			if err == io.EOF {
				return empty(), nil
			}
			return nil, opErr("get", h.url(bucket, key), err)
		}
	}
	if n < 0 {
		return resp.Body, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, n), resp.Body}, nil
}

// Head implements Store. The size comes from Content-Length.
func (h *HTTP) Head(ctx context.Context, bucket, key string) (Info, error) {
	resp, err := h.do(ctx, http.MethodHead, "head", bucket, key, nil)
	if err != nil {
		return Info{}, err
	}
	resp.Body.Close()
	size := resp.ContentLength
	if size < 0 {
		cl, perr := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
		if perr != nil {
			return Info{}, opErr("head", h.url(bucket, key), fmt.Errorf("the server does not report the size (no Content-Length)"))
		}
		size = cl
	}
	mod, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return Info{Key: key, Size: size, Modified: mod, ETag: strongETag(resp.Header.Get("ETag"))}, nil
}

// List implements Store: http has no listing.
func (h *HTTP) List(ctx context.Context, bucket, prefix string) ([]Info, error) {
	return nil, opErr("list", h.url(bucket, prefix), detailed(ErrUnsupported, "http(s) URLs name single objects"))
}

// Put implements Store: http is read-only.
func (h *HTTP) Put(ctx context.Context, bucket, key string, r io.Reader, size int64) error {
	return opErr("put", h.url(bucket, key), ErrReadOnly)
}

// Delete implements Store: http is read-only.
func (h *HTTP) Delete(ctx context.Context, bucket, key string) error {
	return opErr("delete", h.url(bucket, key), ErrReadOnly)
}
