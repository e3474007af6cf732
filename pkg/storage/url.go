package storage

import (
	"fmt"
	"net/url"
	"strings"
)

// Schemes a URL may have.
const (
	SchemeLocal = "local"
	SchemeCOS   = "cos"
	SchemeS3    = "s3"
	SchemeHTTP  = "http"
	SchemeHTTPS = "https"
)

// MaxKeyLen is the longest key accepted (the S3 limit).
const MaxKeyLen = 1024

// URL names a bucket, a prefix in a bucket, or one object.
//
//	cos://bucket              every object of the bucket
//	cos://bucket/prefix/      every object whose key starts with prefix/
//	cos://bucket/key          one object
//	s3://…                    the same on any S3 endpoint
//	local://bucket/key        a file under the configured local root
//	local:///abs/path/        every file under a directory (absolute path)
//	local:///abs/file         one file (absolute path)
//	https://host/path?query   one object read with HTTP range requests
type URL struct {
	// Scheme is one of local, cos, s3, http, https.
	Scheme string
	// Bucket is the bucket (cos, s3, local relative to the root), "" for
	// an absolute local path, or host[:port] for http(s).
	Bucket string
	// Key is the key or prefix, without a leading '/'. For an absolute
	// local path it is the path without its leading '/'; for http(s) the
	// escaped path without its leading '/' plus "?query" if any.
	Key string
}

// String formats u; ParseURL(u.String()) gives u back.
func (u URL) String() string {
	switch {
	case u.Scheme == SchemeLocal && u.Bucket == "":
		return "local:///" + u.Key
	case u.Key == "":
		return u.Scheme + "://" + u.Bucket
	}
	return u.Scheme + "://" + u.Bucket + "/" + u.Key
}

// IsHTTP reports whether u is an http or https URL.
func (u URL) IsHTTP() bool { return u.Scheme == SchemeHTTP || u.Scheme == SchemeHTTPS }

// IsPrefix reports whether u names a set of objects (a bucket, or a key
// ending in '/') rather than one object. An http(s) URL is always one
// object.
func (u URL) IsPrefix() bool {
	if u.IsHTTP() {
		return false
	}
	return u.Key == "" || strings.HasSuffix(u.Key, "/")
}

// Object returns the URL of key in the same store and bucket as u.
func (u URL) Object(key string) URL {
	return URL{Scheme: u.Scheme, Bucket: u.Bucket, Key: key}
}

// HasScheme reports whether s starts with one of the storage schemes
// ("cos://", "s3://", "local://", "http://", "https://"), compared without
// regard to case. The partitioner uses it to decide that an iterdata
// string names storage; ParseURL then checks it in full.
func HasScheme(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	switch strings.ToLower(s[:i]) {
	case SchemeLocal, SchemeCOS, SchemeS3, SchemeHTTP, SchemeHTTPS:
		return true
	}
	return false
}

// ParseURL parses a storage URL. Errors wrap ErrBadURL and quote the URL
// with any user:password part replaced by "***".
func ParseURL(s string) (URL, error) {
	bad := func(format string, a ...any) (URL, error) {
		return URL{}, fmt.Errorf("%w %q: %s", ErrBadURL, Redact(s), fmt.Sprintf(format, a...))
	}
	if s == "" {
		return bad("empty")
	}
	i := strings.Index(s, "://")
	if i <= 0 {
		return bad("want scheme://…, one of cos://bucket/key, s3://bucket/key, local:///abs/path, https://host/path")
	}
	scheme, rest := s[:i], s[i+3:]
	switch scheme {
	case SchemeLocal, SchemeCOS, SchemeS3, SchemeHTTP, SchemeHTTPS:
	default:
		if l := strings.ToLower(scheme); l != scheme && HasScheme(l+"://") {
			return bad("scheme must be lower case (%s://)", l)
		}
		return bad("unknown scheme %q (want cos, s3, local, http or https)", scheme)
	}
	if scheme == SchemeHTTP || scheme == SchemeHTTPS {
		return parseHTTP(s, scheme, bad)
	}
	if j := strings.IndexAny(rest, "?#"); j >= 0 {
		return bad("%q is not allowed in a %s URL", rest[j:j+1], scheme)
	}
	if c, ok := controlChar(rest); ok {
		return bad("control character %q", c)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if strings.Contains(bucket, "@") {
		return bad("credentials do not belong in a storage URL: configure them (see docs/storage.md)")
	}
	u := URL{Scheme: scheme, Bucket: bucket, Key: key}
	if scheme == SchemeLocal && bucket == "" {
		if !strings.HasPrefix(s, "local:///") {
			return bad("want local:///abs/path or local://bucket/key")
		}
		if key == "" {
			return bad("an absolute local path needs at least one directory (local:///abs/path/)")
		}
	} else {
		if bucket == "" {
			return bad("missing bucket (want %s://bucket/key)", scheme)
		}
		if err := checkBucket(bucket); err != "" {
			return bad("bucket %q: %s", bucket, err)
		}
	}
	if len(key) > MaxKeyLen {
		return bad("key longer than %d bytes", MaxKeyLen)
	}
	if key != "" {
		if err := checkKey(key); err != "" {
			return bad("key %q: %s", key, err)
		}
	}
	return u, nil
}

func parseHTTP(s, scheme string, bad func(string, ...any) (URL, error)) (URL, error) {
	if c, ok := controlChar(s); ok {
		return bad("control character %q", c)
	}
	p, err := url.Parse(s)
	if err != nil {
		return bad("%v", unwrapURLError(err))
	}
	if p.User != nil {
		return bad("credentials do not belong in a storage URL")
	}
	if p.Host == "" {
		return bad("missing host")
	}
	if p.Fragment != "" || strings.Contains(s, "#") {
		return bad("a fragment (#…) is not allowed")
	}
	if p.Opaque != "" {
		return bad("want %s://host/path", scheme)
	}
	key := strings.TrimPrefix(p.EscapedPath(), "/")
	if p.RawQuery != "" || p.ForceQuery {
		key += "?" + p.RawQuery
	}
	u := URL{Scheme: scheme, Bucket: p.Host, Key: key}
	// Only accept URLs that format back to themselves, so that what a task
	// reads is exactly what the user wrote.
	if u.String() != s {
		return bad("not in canonical form (did you mean %q?)", Redact(u.String()))
	}
	return u, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func controlChar(s string) (rune, bool) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return r, true
		}
	}
	return 0, false
}

// checkBucket applies the S3 / IBM COS bucket naming rules.
func checkBucket(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return "must be 3 to 63 characters"
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' || c == '.':
			if i == 0 || i == len(b)-1 {
				return "must start and end with a lower-case letter or digit"
			}
		default:
			return "may hold only lower-case letters, digits, '-' and '.'"
		}
	}
	if strings.Contains(b, "..") {
		return "must not contain \"..\""
	}
	return ""
}

// checkKey rejects keys that cannot map safely onto a file system.
func checkKey(k string) string {
	if strings.HasPrefix(k, "/") {
		return "must not start with '/' (one '/' separates bucket and key)"
	}
	segs := strings.Split(k, "/")
	for i, seg := range segs {
		switch seg {
		case ".", "..":
			return "must not contain \".\" or \"..\" segments"
		case "":
			if i != len(segs)-1 {
				return "must not contain empty segments (\"//\")"
			}
		}
	}
	return ""
}

// Redact removes a user:password@ part from a URL-like string.
func Redact(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return s[:i+3] + "***@" + rest[at+1:]
	}
	return s
}
