package dial

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Roles a program takes on a bus with per-role permissions (deploy/nats,
// deploy/rabbitmq). The role names the program's reply inbox on NATS.
const (
	RoleSubmitter   = "submitter"
	RoleCoordinator = "coordinator"
	RoleRuntime     = "runtime"
	// RoleWatcher reads job events and publishes nothing (`submit
	// events`).
	RoleWatcher = "watcher"
)

// Credentials authenticate a connection without putting secrets in the
// URL: each field replaces what the URL says. Secrets come from files or
// the environment (see pkg/cli), never from the command line.
type Credentials struct {
	// User and Password replace the URL's user info; a Password alone
	// keeps the URL's user name.
	User, Password string
	// Token is a NATS token.
	Token string
	// NKeyFile is a file holding a NATS NKEY user seed (SU…).
	NKeyFile string
	// CredsFile is a NATS .creds file (user JWT and NKEY seed).
	CredsFile string
	// TLSCA is a PEM file of the CAs that sign the server's certificate
	// (instead of the system's roots); TLSCert and TLSKey are the
	// client's certificate and key, for servers that verify clients.
	TLSCA, TLSCert, TLSKey string
	// InboxPrefix, NATS only, overrides the reply inbox prefix (default
	// "_INBOX.<namespace>.<role>" when the Options name a role).
	InboxPrefix string
}

func (c Credentials) validate() error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("TLS client certificate and key: give both or neither"))
	}
	if c.Token != "" && (c.User != "" || c.Password != "") {
		errs = append(errs, errors.New("give a token or a user and password, not both"))
	}
	return errors.Join(errs...)
}

// tlsConfig builds the TLS configuration the credentials name; nil when
// they name none.
func (c Credentials) tlsConfig() (*tls.Config, error) {
	if c.TLSCA == "" && c.TLSCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS CA file: %v", ErrBadCredentials, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: TLS CA file %s: no PEM certificate in it", ErrBadCredentials, c.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS client certificate: %v", ErrBadCredentials, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ErrBadCredentials reports credentials that cannot be used as given (an
// unreadable file, a certificate without its key).
var ErrBadCredentials = errors.New("bad bus credentials")

// userFromURL returns the user name of the first URL of a list.
func userFromURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(strings.Split(raw, ",")[0]))
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}

// stripUserInfo removes user info from every URL of a list (the
// credentials then come from Credentials alone).
func stripUserInfo(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
