package trigger

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// keyPair serves a certificate and key from their files, and loads them
// again when either file changes (a renewed certificate is taken up by the
// next handshake, without a restart). A renewal that cannot be loaded (its
// files caught half written, or a key that does not match) leaves the
// previous pair in use, logged, and is tried again at the next handshake.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
	certSize, keySize int64
	lastErr           string
}

// loadKeyPair loads the pair once; an error names the files.
func loadKeyPair(certFile, keyFile string, log *slog.Logger) (*keyPair, error) {
	k := &keyPair{certFile: certFile, keyFile: keyFile, log: log}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload loads the files if they changed since the last load.
func (k *keyPair) reload() error {
	ci, err := os.Stat(k.certFile)
	if err != nil {
		return fmt.Errorf("webhook TLS certificate: %w", err)
	}
	ki, err := os.Stat(k.keyFile)
	if err != nil {
		return fmt.Errorf("webhook TLS key: %w", err)
	}
	if k.cert != nil && ci.ModTime().Equal(k.certMod) && ki.ModTime().Equal(k.keyMod) && ci.Size() == k.certSize && ki.Size() == k.keySize {
		return nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("webhook TLS certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.certMod, k.keyMod, k.certSize, k.keySize = &c, ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()
	return nil
}

// get is tls.Config.GetCertificate.
func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reload(); err != nil {
		if msg := err.Error(); msg != k.lastErr {
			k.lastErr = msg
			k.log.Warn("webhook TLS: keeping the certificate in use; its files changed and could not be loaded", "err", err)
		}
	} else {
		k.lastErr = ""
	}
	return k.cert, nil
}

// tlsConfig is the listener's TLS configuration: TLS 1.2 or newer, the
// pair's certificate.
func (k *keyPair) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: k.get}
}
