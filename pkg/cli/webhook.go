package cli

import (
	"crypto/tls"
	"flag"
	"os"
	"strings"

	"github.com/skeinrun/skein/pkg/trigger"
)

// webhookFlags are the coordinator's webhook listener flags: where S3
// servers POST their bucket notifications for triggers whose source is a
// webhook (docs/pipelines.md#bucket-notifications-by-webhook).
type webhookFlags struct {
	addr, tokenFile string
	tlsCert, tlsKey string
	public          bool
}

// webhookFile is the config file's webhook: section.
type webhookFile struct {
	Listen    string `yaml:"listen"`
	Public    bool   `yaml:"public"`
	TokenFile string `yaml:"token_file"`
	TLSCert   string `yaml:"tls_cert"`
	TLSKey    string `yaml:"tls_key"`
}

func (w *webhookFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.addr, "webhook-listen", "", "take triggers' webhook events (POST /webhook/NAME) on this host:port, loopback unless --webhook-public (env SKEIN_WEBHOOK_LISTEN)")
	fs.BoolVar(&w.public, "webhook-public", false, "allow --webhook-listen on an address other than loopback")
	fs.StringVar(&w.tokenFile, "webhook-token-file", "", "file of the webhook's tokens, one a line (env SKEIN_WEBHOOK_TOKEN holds one directly): every request presents one")
	fs.StringVar(&w.tlsCert, "webhook-tls-cert", "", "serve the webhook over HTTPS with this certificate (PEM; a renewed file is taken up without a restart) (env SKEIN_WEBHOOK_TLS_CERT)")
	fs.StringVar(&w.tlsKey, "webhook-tls-key", "", "the key (PEM) of --webhook-tls-cert (env SKEIN_WEBHOOK_TLS_KEY)")
}

// resolve fills what the flags left unset from the environment, then the
// config file, and reads the tokens; it returns nil when no listener is
// asked for.
func (w *webhookFlags) resolve(fc *fileConfig, getenv func(string) string) (*trigger.WebhookConfig, error) {
	if w.addr == "" {
		w.addr = getenv("SKEIN_WEBHOOK_LISTEN")
	}
	if w.addr == "" {
		w.addr = fc.Webhook.Listen
	}
	if w.addr == "" {
		return nil, nil
	}
	w.public = w.public || fc.Webhook.Public
	if w.tokenFile == "" {
		w.tokenFile = fc.Webhook.TokenFile
	}
	for _, f := range []struct {
		v             *string
		env, fromFile string
	}{{&w.tlsCert, "SKEIN_WEBHOOK_TLS_CERT", fc.Webhook.TLSCert}, {&w.tlsKey, "SKEIN_WEBHOOK_TLS_KEY", fc.Webhook.TLSKey}} {
		if *f.v == "" {
			*f.v = getenv(f.env)
		}
		if *f.v == "" {
			*f.v = f.fromFile
		}
	}
	cfg := &trigger.WebhookConfig{Addr: w.addr, Public: w.public, TLSCert: w.tlsCert, TLSKey: w.tlsKey}
	if t := strings.TrimSpace(getenv("SKEIN_WEBHOOK_TOKEN")); t != "" {
		cfg.Tokens = append(cfg.Tokens, t)
	}
	if w.tokenFile != "" {
		b, err := os.ReadFile(w.tokenFile)
		if err != nil {
			return nil, usagef("--webhook-token-file: %v", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				cfg.Tokens = append(cfg.Tokens, l)
			}
		}
	}
	if len(cfg.Tokens) == 0 {
		return nil, usagef("--webhook-listen needs a token: --webhook-token-file FILE or SKEIN_WEBHOOK_TOKEN (16 characters or more)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	if cfg.TLSCert != "" {
		// Checked before the coordinator connects: a pair that cannot be
		// loaded is a bad flag, not a failure an hour later.
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, usagef("--webhook-tls-cert %s, --webhook-tls-key %s: %v", cfg.TLSCert, cfg.TLSKey, err)
		}
	}
	return cfg, nil
}
