// Package sign lets the coordinator sign the messages that decide
// outcomes — tasks, reducer feeds and job end records — and runtimes and
// submitters refuse what it did not sign, for a bus shared with
// publishers that are not trusted (coordinator --sign-key, runtime and
// submit --verify-key).
//
// Signatures are Ed25519 over the message's data, carried in the
// Skein-Sig header (base64). The coordinator holds the private key;
// runtimes and submitters hold only the public key, so a compromised
// runtime cannot forge tasks for the others. A signature binds the data,
// not the moment: whoever can publish on the bus can replay a task the
// coordinator signed (it runs again; its first outcome still wins).
//
// Keys are PEM files as openssl writes them:
//
//	openssl genpkey -algorithm ed25519 -out sign.pem        # coordinator
//	openssl pkey -in sign.pem -pubout -out verify.pem       # runtimes, submit
package sign

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/skeinrun/skein/bus"
)

// Header holds a message's signature.
const Header = "Skein-Sig"

var (
	// ErrUnsigned is returned for a message without a signature.
	ErrUnsigned = errors.New("not signed by the coordinator")
	// ErrBadSignature is returned for a signature that does not match.
	ErrBadSignature = errors.New("bad signature")
)

// Signer signs messages with the coordinator's private key.
type Signer struct{ key ed25519.PrivateKey }

// Verifier checks messages against the coordinator's public key.
type Verifier struct{ key ed25519.PublicKey }

// NewSigner returns a signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// NewVerifier returns a verifier for key.
func NewVerifier(key ed25519.PublicKey) *Verifier { return &Verifier{key: key} }

// Sign sets m's signature header. It is safe for concurrent use.
func (s *Signer) Sign(m *bus.Message) {
	sig := ed25519.Sign(s.key, m.Data)
	h := make(map[string]string, len(m.Header)+1)
	for k, v := range m.Header {
		h[k] = v
	}
	h[Header] = base64.StdEncoding.EncodeToString(sig)
	m.Header = h
}

// Public returns the verifier of this signer's signatures.
func (s *Signer) Public() *Verifier { return &Verifier{key: s.key.Public().(ed25519.PublicKey)} }

// Verify reports whether m carries a good signature.
func (v *Verifier) Verify(m bus.Message) error {
	enc, ok := m.Header[Header]
	if !ok || enc == "" {
		return ErrUnsigned
	}
	sig, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || !ed25519.Verify(v.key, m.Data, sig) {
		return ErrBadSignature
	}
	return nil
}

// LoadSigner reads an Ed25519 private key (PEM, PKCS #8).
func LoadSigner(path string) (*Signer, error) {
	k, err := readKey(path)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("sign key %s: want an Ed25519 private key (openssl genpkey -algorithm ed25519), got %T", path, k)
	}
	return NewSigner(priv), nil
}

// LoadVerifier reads an Ed25519 public key (PEM, PKIX), or a private key
// whose public half it uses.
func LoadVerifier(path string) (*Verifier, error) {
	k, err := readKey(path)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case ed25519.PublicKey:
		return NewVerifier(k), nil
	case ed25519.PrivateKey:
		return NewVerifier(k.Public().(ed25519.PublicKey)), nil
	}
	return nil, fmt.Errorf("verify key %s: want an Ed25519 public key (openssl pkey -pubout), got %T", path, k)
}

func readKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s: no PEM block", path)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		return k, nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("key file %s: a PEM %q block; want PRIVATE KEY or PUBLIC KEY", path, block.Type)
}

// Verify checks m against the signer's own public key (a coordinator
// reading back its job log).
func (s *Signer) Verify(m bus.Message) error { return s.Public().Verify(m) }
