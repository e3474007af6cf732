package cli

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/skeinrun/skein/internal/testpki"
)

// The webhook's settings: a flag wins over the variable, which wins over
// the config file; tokens come from the variable and the file, one a
// line; no token, a short one or an address beyond loopback without
// --webhook-public is a usage error; no address, no listener.
func TestWebhookFlags(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("first-token-0123456789\n\n  second-token-0123456789  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "skein.yaml")
	if err := os.WriteFile(cfgFile, []byte("webhook:\n  listen: 127.0.0.1:9001\n  token_file: "+tokens+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfig(cfgFile, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"first-token-0123456789", "second-token-0123456789"}
	// Three certificate pairs (one CA each), for the file, the variables
	// and the flags.
	pair := func() (string, string) {
		p := testpki.New(t)
		return p.ServerCert, p.ServerKey
	}
	fileCert, fileKey := pair()
	envCert, envKey := pair()
	flagCert, flagKey := pair()
	tlsFile := filepath.Join(dir, "skein-tls.yaml")
	if err := os.WriteFile(tlsFile, []byte("webhook:\n  listen: 127.0.0.1:9001\n  token_file: "+tokens+"\n  tls_cert: "+fileCert+"\n  tls_key: "+fileKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fcTLS, err := loadConfig(tlsFile, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   []string
		env    map[string]string
		file   *fileConfig
		addr   string
		tokens []string
		usage  bool
		// the TLS pair, when set
		cert, key string
	}{
		{name: "nothing asked", file: &fileConfig{}},
		{name: "the config file", file: fc, addr: "127.0.0.1:9001", tokens: []string{"first-token-0123456789", "second-token-0123456789"}},
		{name: "the variable over the file", file: fc, env: map[string]string{"SKEIN_WEBHOOK_LISTEN": "127.0.0.1:9002", "SKEIN_WEBHOOK_TOKEN": "env-token-0123456789"},
			addr: "127.0.0.1:9002", tokens: []string{"env-token-0123456789", "first-token-0123456789", "second-token-0123456789"}},
		{name: "the flag over the variable", file: fc, args: []string{"--webhook-listen", "[::1]:9003"}, env: map[string]string{"SKEIN_WEBHOOK_LISTEN": "127.0.0.1:9002"},
			addr: "[::1]:9003", tokens: []string{"first-token-0123456789", "second-token-0123456789"}},
		{name: "no token", file: &fileConfig{}, args: []string{"--webhook-listen", "127.0.0.1:9004"}, usage: true},
		{name: "a short token", file: &fileConfig{}, args: []string{"--webhook-listen", "127.0.0.1:9004", "--webhook-token-file", short}, usage: true},
		{name: "beyond loopback", file: fc, args: []string{"--webhook-listen", "0.0.0.0:9005"}, usage: true},
		{name: "beyond loopback, public", file: fc, args: []string{"--webhook-listen", "0.0.0.0:9005", "--webhook-public"},
			addr: "0.0.0.0:9005", tokens: []string{"first-token-0123456789", "second-token-0123456789"}},
		{name: "TLS from the config file", file: fcTLS, addr: "127.0.0.1:9001", tokens: both, cert: fileCert, key: fileKey},
		{name: "TLS, the variables over the file", file: fcTLS, env: map[string]string{"SKEIN_WEBHOOK_TLS_CERT": envCert, "SKEIN_WEBHOOK_TLS_KEY": envKey},
			addr: "127.0.0.1:9001", tokens: both, cert: envCert, key: envKey},
		{name: "TLS, the flags over the variables", file: fcTLS, args: []string{"--webhook-tls-cert", flagCert, "--webhook-tls-key", flagKey},
			env:  map[string]string{"SKEIN_WEBHOOK_TLS_CERT": envCert, "SKEIN_WEBHOOK_TLS_KEY": envKey},
			addr: "127.0.0.1:9001", tokens: both, cert: flagCert, key: flagKey},
		{name: "TLS, a certificate without its key", file: fc, args: []string{"--webhook-tls-cert", flagCert}, usage: true},
		{name: "TLS, a key that is not the certificate's", file: fc, args: []string{"--webhook-tls-cert", flagCert, "--webhook-tls-key", envKey}, usage: true},
		{name: "TLS, files that do not exist", file: fc, args: []string{"--webhook-tls-cert", flagCert + ".nope", "--webhook-tls-key", flagKey}, usage: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var w webhookFlags
			w.register(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := w.resolve(c.file, func(k string) string { return c.env[k] })
			var ue *usageError
			switch {
			case c.usage:
				if !errors.As(err, &ue) {
					t.Fatalf("%v, want a usage error", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			case c.addr == "":
				if cfg != nil {
					t.Fatalf("a listener without an address: %+v", cfg)
				}
				return
			case cfg == nil:
				t.Fatal("no listener")
			}
			if cfg.Addr != c.addr || !slices.Equal(cfg.Tokens, c.tokens) {
				t.Fatalf("addr %s tokens %q, want %s %q", cfg.Addr, cfg.Tokens, c.addr, c.tokens)
			}
			if cfg.TLSCert != c.cert || cfg.TLSKey != c.key {
				t.Fatalf("TLS pair %q %q, want %q %q", cfg.TLSCert, cfg.TLSKey, c.cert, c.key)
			}
		})
	}
}
