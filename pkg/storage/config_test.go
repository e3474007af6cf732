package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	c := DefaultConfig()
	c.LocalRoot = "relative/dir"
	c.ArtifactsURL = "https://host/x/"
	c.InlineLimit = -1
	c.HTTPTimeout = 0
	c.COS.Endpoint = "s3.example.com"
	c.COS.Region = ""
	c.COS.AccessKey = "AKID"
	c.COS.APIKey = "apikey-value"
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, field := range []string{"local_root", "artifacts_url", "inline_limit", "http_timeout", "cos.endpoint", "cos.region", "cos.secret_key", "cos.api_key"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate does not name %s: %v", field, err)
		}
	}
	if strings.Contains(err.Error(), "apikey-value") {
		t.Errorf("Validate leaks the API key: %v", err)
	}
	c = DefaultConfig()
	c.ArtifactsURL = "cos://bucket/key-not-prefix"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "artifacts_url") {
		t.Errorf("artifacts_url naming one object accepted: %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		EnvLocalRoot:   "/srv/skein",
		EnvArtifacts:   "s3://art/jobs/",
		EnvInlineLimit: "1MiB",
		EnvEndpoint:    "http://127.0.0.1:7070",
		EnvRegion:      "eu-de",
		EnvPathStyle:   "true",
		EnvAccessKey:   "AKID",
		EnvSecretKey:   "s3cr3t-value",
		EnvHTTPTimeout: "5s",
	}
	c, err := DefaultConfig().fromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalRoot != "/srv/skein" || c.ArtifactsURL != "s3://art/jobs/" || c.InlineLimit != 1<<20 ||
		c.COS.Endpoint != "http://127.0.0.1:7070" || c.COS.Region != "eu-de" || !c.COS.PathStyle ||
		c.COS.AccessKey != "AKID" || c.COS.SecretKey.Reveal() != "s3cr3t-value" || c.HTTPTimeout != 5*time.Second {
		t.Fatalf("FromEnv = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// No credential in any printed form.
	js, _ := json.Marshal(c)
	for _, out := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", c.COS), fmt.Sprintf("%+v", c.COS), string(js)} {
		if strings.Contains(out, "s3cr3t-value") {
			t.Errorf("secret printed: %s", out)
		}
	}
	_, err = DefaultConfig().fromLookup(func(k string) (string, bool) {
		switch k {
		case EnvInlineLimit:
			return "lots", true
		case EnvPathStyle:
			return "maybe", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), EnvInlineLimit) || !strings.Contains(err.Error(), EnvPathStyle) {
		t.Fatalf("bad env values: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "262144": 262144, "256K": 256 << 10, "256KiB": 256 << 10, "2 MB": 2 << 20, "1G": 1 << 30} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "-1", "x", "1T"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}

func TestResolver(t *testing.T) {
	c := DefaultConfig()
	c.LocalRoot = t.TempDir()
	r, err := NewResolver(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]string{
		"local://bkt/k": "*storage.Local", "local:///tmp/x": "*storage.Local",
		"https://h/x": "*storage.HTTP", "http://h/x": "*storage.HTTP",
	} {
		_, s, err := r.Parse(raw)
		if err != nil || fmt.Sprintf("%T", s) != want {
			t.Errorf("%s -> %T, %v", raw, s, err)
		}
	}
	// cos:// without an endpoint: a clear configuration error.
	_, _, err = r.Parse("cos://bucket/key")
	if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "cos://bucket/key") || !strings.Contains(err.Error(), EnvEndpoint) {
		t.Fatalf("cos without endpoint: %v", err)
	}
	bad := DefaultConfig()
	bad.InlineLimit = -5
	if _, err := NewResolver(bad, nil); err == nil || !strings.Contains(err.Error(), "inline_limit") {
		t.Fatalf("NewResolver with a bad config: %v", err)
	}
}

// TestHTTPStore reads through a real HTTP server on loopback, with and
// without range support.
func TestHTTPStore(t *testing.T) {
	body := "line one\nline two\nline three\n"
	ranged := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/data.txt":
			http.ServeContent(w, r, "data.txt", time.Unix(1700000000, 0), strings.NewReader(body))
		case "/secret":
			http.Error(w, "no", http.StatusForbidden)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ranged.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodGet {
			w.Write([]byte(body)) // ignores Range
		}
	}))
	defer plain.Close()
	ctx := context.Background()
	h := NewHTTP("http", 5*time.Second, testLogger(t))
	for _, srv := range []*httptest.Server{ranged, plain} {
		host := strings.TrimPrefix(srv.URL, "http://")
		info, err := h.Head(ctx, host, "data.txt")
		if err != nil || info.Size != int64(len(body)) {
			t.Fatalf("head: %+v, %v", info, err)
		}
		for _, c := range []struct {
			off, n int64
			want   string
		}{{0, -1, body}, {5, 3, "one"}, {9, -1, body[9:]}, {int64(len(body)), -1, ""}} {
			rc, err := h.Get(ctx, host, "data.txt", c.off, c.n)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(b) != c.want {
				t.Errorf("%s get [%d,+%d) = %q, %v; want %q", srv.URL, c.off, c.n, b, err, c.want)
			}
		}
	}
	host := strings.TrimPrefix(ranged.URL, "http://")
	_, err := h.Head(ctx, host, "missing")
	checkErr(t, err, ErrNotFound, ranged.URL+"/missing")
	_, err = h.Get(ctx, host, "secret", 0, -1)
	checkErr(t, err, ErrAccessDenied, ranged.URL+"/secret")
	err = h.Put(ctx, host, "x", strings.NewReader(""), 0)
	checkErr(t, err, ErrReadOnly, ranged.URL+"/x")
	_, err = h.List(ctx, host, "")
	checkErr(t, err, ErrUnsupported, ranged.URL)
}

// TestHTTPGetVersion pins reads to the ETag a server gives: the version it
// names reads as Get does, ranged or not; once the server's content (and
// ETag) changed, the read fails with ErrChanged; a weak ETag cannot be
// pinned.
func TestHTTPGetVersion(t *testing.T) {
	var mu sync.Mutex
	body, etag := "line one\nline two\n", `"v1"`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, e := body, etag
		mu.Unlock()
		w.Header().Set("ETag", e)
		http.ServeContent(w, r, "data.txt", time.Unix(1700000000, 0), strings.NewReader(b))
	}))
	defer srv.Close()
	ctx := context.Background()
	h := NewHTTP("http", 5*time.Second, testLogger(t))
	host := strings.TrimPrefix(srv.URL, "http://")
	info, err := h.Head(ctx, host, "data.txt")
	if err != nil || info.ETag != "v1" || !Pinnable(info.ETag) {
		t.Fatalf("head: %+v, %v; want ETag v1, pinnable", info, err)
	}
	for _, c := range []struct {
		off, n int64
		want   string
	}{{0, -1, body}, {5, 3, "one"}, {9, -1, body[9:]}} {
		rc, err := h.GetVersion(ctx, host, "data.txt", info.ETag, c.off, c.n)
		if err != nil {
			t.Fatalf("get [%d,+%d) of v1: %v", c.off, c.n, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != c.want {
			t.Errorf("get [%d,+%d) of v1 = %q, %v; want %q", c.off, c.n, b, err, c.want)
		}
	}
	mu.Lock()
	body, etag = "line ONE\nline TWO\n", `"v2"`
	mu.Unlock()
	_, err = h.GetVersion(ctx, host, "data.txt", info.ETag, 5, 3)
	checkErr(t, err, ErrChanged, srv.URL+"/data.txt")
	if !Lasting(err) {
		t.Errorf("a changed object is worth trying again: %v", err)
	}
	if Pinnable(`W/"v2`) || Pinnable("") {
		t.Error("a weak or missing ETag is pinnable")
	}
	_, err = h.GetVersion(ctx, host, "data.txt", `W/"v2`, 0, -1)
	checkErr(t, err, ErrInvalid, srv.URL+"/data.txt")
}

// TestHTTPETagForms pins reads only to an ETag sent as a strong entity tag
// ("…"): a weak, unquoted or malformed one leaves the object unpinned
// rather than failing every pinned read with 412; and a server that
// ignores If-Match but sends the object's new ETag is caught.
func TestHTTPETagForms(t *testing.T) {
	var mu sync.Mutex
	etag, honour := "", true
	body := "line one\nline two\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		e, h := etag, honour
		mu.Unlock()
		if !h {
			r.Header.Del("If-Match")
		}
		if e != "" {
			w.Header().Set("ETag", e)
		}
		http.ServeContent(w, r, "data.txt", time.Unix(1700000000, 0), strings.NewReader(body))
	}))
	defer srv.Close()
	ctx := context.Background()
	h := NewHTTP("http", 5*time.Second, testLogger(t))
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, c := range []struct{ sent, want string }{
		{`"v1"`, "v1"}, {`W/"v1"`, ""}, {`v1`, ""}, {`"v1`, ""}, {`""`, ""},
		{`"v 1"`, ""}, {`"a"b"`, ""}, {``, ""},
	} {
		mu.Lock()
		etag = c.sent
		mu.Unlock()
		info, err := h.Head(ctx, host, "data.txt")
		if err != nil {
			t.Fatal(err)
		}
		if info.ETag != c.want || Pinnable(info.ETag) != (c.want != "") {
			t.Errorf("ETag header %q: Info.ETag %q (pinnable %v), want %q", c.sent, info.ETag, Pinnable(info.ETag), c.want)
		}
	}
	for _, bad := range []string{`v"1`, "v 1", "v\x001"} {
		if Pinnable(bad) {
			t.Errorf("Pinnable(%q): a value that cannot be sent quoted is pinnable", bad)
		}
	}
	// A server that ignores If-Match: the read of a version it no longer
	// has fails by the ETag it answers with.
	mu.Lock()
	etag, honour = `"v2"`, false
	mu.Unlock()
	_, err := h.GetVersion(ctx, host, "data.txt", "v1", 5, 3)
	checkErr(t, err, ErrChanged, srv.URL+"/data.txt")
	rc, err := h.GetVersion(ctx, host, "data.txt", "v2", 5, 3)
	if err != nil {
		t.Fatalf("read of the current version from a server that ignores If-Match: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "one" {
		t.Errorf("read %q, want %q", b, "one")
	}
}
