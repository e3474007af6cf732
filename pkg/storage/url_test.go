package storage

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	good := []struct {
		in     string
		want   URL
		prefix bool
	}{
		{"cos://bucket", URL{"cos", "bucket", ""}, true},
		{"cos://bucket/", URL{"cos", "bucket", ""}, true},
		{"cos://bucket/books/", URL{"cos", "bucket", "books/"}, true},
		{"cos://bucket/books/a.txt", URL{"cos", "bucket", "books/a.txt"}, false},
		{"s3://my.bucket-1/k", URL{"s3", "my.bucket-1", "k"}, false},
		{"local:///tmp/data/", URL{"local", "", "tmp/data/"}, true},
		{"local:///tmp/data/file.txt", URL{"local", "", "tmp/data/file.txt"}, false},
		{"local://bucket/key", URL{"local", "bucket", "key"}, false},
		{"https://example.com/data/a.txt", URL{"https", "example.com", "data/a.txt"}, false},
		{"http://127.0.0.1:8080/x?y=1", URL{"http", "127.0.0.1:8080", "x?y=1"}, false},
		{"https://example.com/dir/", URL{"https", "example.com", "dir/"}, false},
		{"cos://bucket/key with spaces", URL{"cos", "bucket", "key with spaces"}, false},
	}
	for _, c := range good {
		u, err := ParseURL(c.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.in, err)
			continue
		}
		if u != c.want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.in, u, c.want)
		}
		if u.IsPrefix() != c.prefix {
			t.Errorf("ParseURL(%q).IsPrefix() = %v", c.in, u.IsPrefix())
		}
		if back, err := ParseURL(u.String()); err != nil || back != u {
			t.Errorf("round trip of %q: %q -> %+v, %v", c.in, u.String(), back, err)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"bucket/key", "want scheme://"},
		{"ftp://host/x", "unknown scheme"},
		{"COS://bucket/k", "lower case"},
		{"cos://", "missing bucket"},
		{"cos:///key", "missing bucket"},
		{"cos://Bucket/k", "lower-case"},
		{"cos://ab/k", "3 to 63"},
		{"cos://-bucket/k", "start and end"},
		{"cos://bucket/a//b", "empty segments"},
		{"cos://bucket/a/../b", ".."},
		{"cos://bucket//x", "must not start with '/'"},
		{"cos://bucket/k?x=1", "not allowed"},
		{"cos://bucket/k\x00", "control character"},
		{"cos://user:pw@bucket/k", "credentials"},
		{"local://", "want local:///abs/path"},
		{"local:///", "needs at least one directory"},
		{"https://", "missing host"},
		{"https://user:topsecret@host/x", "credentials"},
		{"https://host/x#frag", "fragment"},
		{"cos://bucket/" + strings.Repeat("k", MaxKeyLen+1), "longer than"},
	}
	for _, c := range bad {
		_, err := ParseURL(c.in)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", c.in)
			continue
		}
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("ParseURL(%q): %v does not wrap ErrBadURL", c.in, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURL(%q) = %q, want it to say %q", c.in, err, c.want)
		}
		if strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), ":pw@") {
			t.Errorf("ParseURL(%q) leaks credentials: %v", c.in, err)
		}
	}
}

func TestHasScheme(t *testing.T) {
	for s, want := range map[string]bool{
		"cos://b": true, "S3://b": true, "local:///x": true, "https://h": true,
		"hello": false, "ftp://x": false, "://x": false, "cos:/b": false,
	} {
		if HasScheme(s) != want {
			t.Errorf("HasScheme(%q) = %v", s, !want)
		}
	}
}

// FuzzParseURL checks that ParseURL never panics, that what it accepts
// formats back to itself, and that errors never echo a password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"cos://bucket", "cos://bucket/", "cos://bucket/prefix/", "cos://bucket/key",
		"s3://b.c-d/x/y/z", "local:///abs/path/", "local:///abs/file", "local://bkt/k",
		"https://example.com/a/b?c=d", "http://127.0.0.1:9000/x", "https://u:secretpw@h/x",
		"cos://", "cos:///x", "local:///", "cos://bucket/a//b", "cos://bucket/../x",
		"https://[::1]:80/x", "http://h/%zz", "cos://bucket/\u00e9t\u00e9", "s3://bu\x00ck/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("error %v does not wrap ErrBadURL", err)
			}
			if Redact(s) != s && strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error leaks a password: %v", err)
			}
			return
		}
		back, err := ParseURL(u.String())
		if err != nil || back != u {
			t.Fatalf("%q parsed to %+v, formats as %q, which parses to %+v, %v", s, u, u.String(), back, err)
		}
		if !u.IsHTTP() && u.String() != s && u.String()+"/" != s {
			t.Fatalf("%q formats as %q", s, u.String())
		}
		if !HasScheme(s) {
			t.Fatalf("%q parsed but HasScheme is false", s)
		}
	})
}
