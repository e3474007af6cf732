package dial

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/skeinrun/skein/internal/testpki"
)

func TestCredentialsRefusedBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		url  string
		cred Credentials
		want error
	}{
		{"password without a user", "nats://127.0.0.1:1", Credentials{Password: "pw"}, ErrBadCredentials},
		{"certificate without its key", "nats://127.0.0.1:1", Credentials{TLSCert: "c.pem"}, ErrBadCredentials},
		{"token and password", "nats://u@127.0.0.1:1", Credentials{Token: "t", Password: "pw"}, ErrBadCredentials},
		{"CA file without PEM", "nats://127.0.0.1:1", Credentials{TLSCA: notPEM}, ErrBadCredentials},
		{"missing CA file", "nats://127.0.0.1:1", Credentials{TLSCA: filepath.Join(dir, "nope")}, ErrBadCredentials},
		{"NATS credentials on AMQP", "amqp://u@127.0.0.1:1/", Credentials{CredsFile: "x.creds"}, ErrBadCredentials},
		{"TLS on amqp://", "amqp://u@127.0.0.1:1/", Credentials{TLSCA: testpki.New(t).CA}, ErrBadURL},
	} {
		_, err := Open(context.Background(), c.url, Options{Credentials: c.cred})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestStripUserInfo(t *testing.T) {
	got := stripUserInfo("nats://a:pw@h1:4222,nats://b@h2:4222")
	if got != "nats://h1:4222,nats://h2:4222" {
		t.Errorf("stripUserInfo = %q", got)
	}
	if u := userFromURL("nats://a:pw@h1:4222,nats://b@h2:4222"); u != "a" {
		t.Errorf("userFromURL = %q", u)
	}
}
