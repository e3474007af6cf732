package cli

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The coordinator's --http flags: the address check, where the token
// comes from, and who may read and cancel.
func TestHTTPFlags(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		err     string
		token   string
		readAny bool // ReadNeedsAuth is false
		cancel  []string
	}{
		{name: "off", args: nil, readAny: true},
		{name: "loopback, no credentials", args: []string{"--http", "127.0.0.1:9090"}, readAny: true},
		{name: "from the environment", env: map[string]string{"SKEIN_HTTP": "[::1]:0", "SKEIN_HTTP_TOKEN": "env-token-0123456789"}, token: "env-token-0123456789", readAny: true},
		{name: "public refused", args: []string{"--http", ":9090"}, err: "--http-public"},
		{name: "public, read-only for all", args: []string{"--http", ":9090", "--http-public"}, readAny: true},
		{name: "public with a token file", args: []string{"--http", ":9090", "--http-public", "--http-token-file", tokenFile}, token: "file-token-0123456789"},
		{name: "public behind a proxy", args: []string{"--http", ":9090", "--http-public", "--http-user-header", "X-Forwarded-User", "--http-cancel-users", "alice, bob"}, cancel: []string{"alice", "bob"}},
		{name: "short token", args: []string{"--http", "127.0.0.1:0"}, env: map[string]string{"SKEIN_HTTP_TOKEN": "short"}, err: "shorter than 16"},
		{name: "cancel users without a header", args: []string{"--http", "127.0.0.1:0", "--http-cancel-users", "alice"}, err: "--http-user-header"},
		{name: "missing token file", args: []string{"--http", "127.0.0.1:0", "--http-token-file", tokenFile + ".none"}, err: "--http-token-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var h httpFlags
			h.register(fs, "the dashboard,")
			h.registerDashboard(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			err := h.resolve(func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("resolve = %v, want an error naming %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := h.auth()
			if a.Token != c.token || a.ReadNeedsAuth == c.readAny || !slices.Equal(a.CancelUsers, c.cancel) {
				t.Errorf("auth %+v; want token %q, read by anyone %v, cancel users %v", a, c.token, c.readAny, c.cancel)
			}
		})
	}
}
