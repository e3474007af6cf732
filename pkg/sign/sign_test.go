package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/internal/testenv"
)

// WriteKeys writes a new key pair as PEM files (for tests) and returns
// their paths.
func writeKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(sk)
	priv = filepath.Join(dir, "sign.pem")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	der, _ = x509.MarshalPKIXPublicKey(pk)
	pub = filepath.Join(dir, "verify.pem")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	return priv, pub
}

func TestSignVerify(t *testing.T) {
	priv, pub := writeKeys(t)
	s, err := LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	m := bus.Message{Data: []byte("a task"), Header: map[string]string{"traceparent": "x"}}
	s.Sign(&m)
	if err := v.Verify(m); err != nil {
		t.Fatalf("a signed message: %v", err)
	}
	if m.Header["traceparent"] != "x" {
		t.Fatal("signing dropped a header")
	}
	forged := m
	forged.Data = []byte("another task")
	if err := v.Verify(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("changed data: %v", err)
	}
	if err := v.Verify(bus.Message{Data: []byte("a task")}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
	_, otherPub := writeKeys(t)
	ov, _ := LoadVerifier(otherPub)
	if err := ov.Verify(m); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another key: %v", err)
	}
	if _, err := LoadSigner(pub); err == nil {
		t.Fatal("a public key loaded as a signer")
	}
	if _, err := LoadVerifier(priv); err != nil {
		t.Fatalf("a private key as verifier: %v", err)
	}
}

// Keys made by openssl, as the docs say, load.
func TestOpenSSLKeys(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if testenv.CI() {
			t.Fatal("openssl is not installed; the docs tell users to make keys with it")
		}
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "sign.pem"), filepath.Join(dir, "verify.pem")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", priv).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command(openssl, "pkey", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s, err := LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	m := bus.Message{Data: []byte("x")}
	s.Sign(&m)
	if err := v.Verify(m); err != nil {
		t.Fatal(err)
	}
}
