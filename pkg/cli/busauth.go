package cli

import (
	"flag"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus/dial"
)

// BusAuth holds the credential and TLS flags every program takes. Secrets
// come from files or the environment, never from the command line, so
// that nothing secret shows in `ps`; a flag wins over its variable.
//
//	--bus-password-file FILE   SKEIN_BUS_PASSWORD (the value) or SKEIN_BUS_PASSWORD_FILE
//	--bus-token-file FILE      SKEIN_BUS_TOKEN (the value) or SKEIN_BUS_TOKEN_FILE   (NATS)
//	--bus-nkey FILE            SKEIN_BUS_NKEY   NKEY user seed file                 (NATS)
//	--bus-creds FILE           SKEIN_BUS_CREDS  .creds file                          (NATS)
//	--tls-ca FILE              SKEIN_TLS_CA     CA certificates (PEM) of the server
//	--tls-cert FILE            SKEIN_TLS_CERT   client certificate (PEM)
//	--tls-key FILE             SKEIN_TLS_KEY    client key (PEM)
//	--bus-inbox PREFIX         SKEIN_BUS_INBOX  NATS reply inbox prefix
//
// The user name stays in the URL (nats://submitter@host:4222) or comes
// from SKEIN_BUS_USER.
type BusAuth struct {
	PasswordFile, TokenFile, NKeyFile, CredsFile string
	TLSCA, TLSCert, TLSKey                       string
	Inbox                                        string
}

func (a *BusAuth) register(fs *flag.FlagSet) {
	fs.StringVar(&a.PasswordFile, "bus-password-file", "", "read the bus password from this file (env SKEIN_BUS_PASSWORD, SKEIN_BUS_PASSWORD_FILE)")
	fs.StringVar(&a.TokenFile, "bus-token-file", "", "NATS: read an auth token from this file (env SKEIN_BUS_TOKEN, SKEIN_BUS_TOKEN_FILE)")
	fs.StringVar(&a.NKeyFile, "bus-nkey", "", "NATS: NKEY user seed file (env SKEIN_BUS_NKEY)")
	fs.StringVar(&a.CredsFile, "bus-creds", "", "NATS: .creds file (env SKEIN_BUS_CREDS)")
	fs.StringVar(&a.TLSCA, "tls-ca", "", "CA certificates (PEM) that sign the bus server's certificate (env SKEIN_TLS_CA)")
	fs.StringVar(&a.TLSCert, "tls-cert", "", "client certificate (PEM) for a bus that verifies clients (env SKEIN_TLS_CERT)")
	fs.StringVar(&a.TLSKey, "tls-key", "", "client key (PEM) of --tls-cert (env SKEIN_TLS_KEY)")
	fs.StringVar(&a.Inbox, "bus-inbox", "", "NATS: reply inbox prefix (env SKEIN_BUS_INBOX; default _INBOX.<namespace>.<role>)")
}

// credentials resolves the flags and the environment into dial's
// credentials. An unreadable file is a usage error.
func (a BusAuth) credentials(getenv func(string) string) (dial.Credentials, error) {
	pick := func(flagValue, env string) string {
		if flagValue != "" {
			return flagValue
		}
		return getenv(env)
	}
	secret := func(file, valueEnv, fileEnv, what string) (string, error) {
		if file == "" {
			if v := getenv(valueEnv); v != "" {
				return v, nil
			}
			file = getenv(fileEnv)
		}
		if file == "" {
			return "", nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("%s file: %v", what, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", usagef("%s file %s is empty", what, file)
		}
		return v, nil
	}
	var c dial.Credentials
	var err error
	if c.Password, err = secret(a.PasswordFile, "SKEIN_BUS_PASSWORD", "SKEIN_BUS_PASSWORD_FILE", "bus password"); err != nil {
		return c, err
	}
	if c.Token, err = secret(a.TokenFile, "SKEIN_BUS_TOKEN", "SKEIN_BUS_TOKEN_FILE", "bus token"); err != nil {
		return c, err
	}
	c.User = getenv("SKEIN_BUS_USER")
	c.NKeyFile = pick(a.NKeyFile, "SKEIN_BUS_NKEY")
	c.CredsFile = pick(a.CredsFile, "SKEIN_BUS_CREDS")
	c.TLSCA = pick(a.TLSCA, "SKEIN_TLS_CA")
	c.TLSCert = pick(a.TLSCert, "SKEIN_TLS_CERT")
	c.TLSKey = pick(a.TLSKey, "SKEIN_TLS_KEY")
	c.InboxPrefix = pick(a.Inbox, "SKEIN_BUS_INBOX")
	return c, nil
}

// dialOptions are the options a program opens its bus with.
func (a BusAuth) dialOptions(name, role string, log *slog.Logger, getenv func(string) string, timeout time.Duration) (dial.Options, error) {
	c, err := a.credentials(getenv)
	if err != nil {
		return dial.Options{}, err
	}
	return dial.Options{Name: name, Role: role, Logger: log, ConnectTimeout: timeout, Credentials: c}, nil
}
