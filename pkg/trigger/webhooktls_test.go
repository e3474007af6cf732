package trigger

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testpki"
)

// TestWebhookTLS: with a certificate and key the webhook speaks HTTPS
// only: a client that trusts the certificate's CA is answered, a plain
// HTTP request is not taken; a renewed pair is served from the next
// handshake on, and a renewal that cannot be loaded leaves the previous
// pair in use (logged). Half a pair, or files that cannot be read, is an
// error that says so.
func TestWebhookTLS(t *testing.T) {
	webhookBuses(t, func(t *testing.T, env webhookEnv) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, logs, _ := hookRunner(ctx, t, env, &fakeCoordinator{seen: map[string]bool{}, lease: true})
		// The pair in use is a copy of first's, renewed with second's.
		first, second := testpki.New(t), testpki.New(t)
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "hook.crt"), filepath.Join(dir, "hook.key")
		install := func(p testpki.PKI) {
			t.Helper()
			for src, dst := range map[string]string{p.ServerCert: certFile, p.ServerKey: keyFile} {
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dst, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		install(first)
		pool := x509.NewCertPool()
		for _, p := range []testpki.PKI{first, second} {
			b, err := os.ReadFile(p.CA)
			if err != nil {
				t.Fatal(err)
			}
			pool.AppendCertsFromPEM(b)
		}
		// issuer names the PKI whose certificate the server showed.
		issuer := func(c *x509.Certificate) string {
			for name, p := range map[string]testpki.PKI{"first": first, "second": second} {
				b, _ := os.ReadFile(p.ServerCert)
				if blk, _ := pem.Decode(b); blk != nil && bytes.Equal(blk.Bytes, c.Raw) {
					return name
				}
			}
			return "unknown"
		}
		base := WebhookConfig{Addr: "127.0.0.1:0", Tokens: []string{hookToken}}

		half := base
		half.TLSCert = certFile
		if _, err := r.ServeWebhook(half); err == nil || !strings.Contains(err.Error(), "both the certificate and its key") {
			t.Fatalf("a certificate without its key: %v", err)
		}
		missing := base
		missing.TLSCert, missing.TLSKey = certFile, filepath.Join(dir, "nope.key")
		if _, err := r.ServeWebhook(missing); err == nil || !strings.Contains(err.Error(), "nope.key") {
			t.Fatalf("a key file that does not exist: %v", err)
		}

		withTLS := base
		withTLS.TLSCert, withTLS.TLSKey = certFile, keyFile
		addr, err := r.ServeWebhook(withTLS)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		testEvent := `{"Service":"S3","Event":"s3:TestEvent","Time":"2026-11-30T10:00:00Z","Bucket":"b"}`
		// postTLS posts the S3 test event and returns the status and
		// whose certificate the server showed.
		postTLS := func() (int, string) {
			t.Helper()
			req, err := http.NewRequest("POST", "https://"+addr.String()+WebhookPath+"uploads", strings.NewReader(testEvent))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+hookToken)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode, issuer(resp.TLS.PeerCertificates[0])
		}
		if code, whose := postTLS(); code != 200 || whose != "first" {
			t.Fatalf("HTTPS: status %d, certificate %s; want 200, first", code, whose)
		}
		if code, _ := post(t, "POST", "http://"+addr.String()+WebhookPath+"uploads", "bearer", hookToken, strings.NewReader(testEvent)); code == 200 {
			t.Fatal("a plain HTTP request to the TLS listener was answered 200")
		}

		// A renewal: the next handshake shows it. (A later modification
		// time: some file systems keep whole seconds.)
		install(second)
		later := time.Now().Add(2 * time.Second)
		for _, f := range []string{certFile, keyFile} {
			if err := os.Chtimes(f, later, later); err != nil {
				t.Fatal(err)
			}
		}
		if code, whose := postTLS(); code != 200 || whose != "second" {
			t.Fatalf("after the renewal: status %d, certificate %s; want 200, second", code, whose)
		}
		// A renewal caught half written: the previous pair stays in use.
		if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nnot yet\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, whose := postTLS(); code != 200 || whose != "second" {
			t.Fatalf("with a broken renewal: status %d, certificate %s; want 200, second", code, whose)
		}
		if !strings.Contains(logs.String(), "keeping the certificate in use") {
			t.Fatal("a renewal that could not be loaded was not logged")
		}
		if strings.Contains(logs.String(), hookToken) {
			t.Fatal("a token is in the log")
		}
	})
}
