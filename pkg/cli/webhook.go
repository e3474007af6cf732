package cli

import (
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
	public          bool
}

// webhookFile is the config file's webhook: section.
type webhookFile struct {
	Listen    string `yaml:"listen"`
	Public    bool   `yaml:"public"`
	TokenFile string `yaml:"token_file"`
}

func (w *webhookFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.addr, "webhook-listen", "", "take triggers' webhook events (POST /webhook/NAME) on this host:port, loopback unless --webhook-public (env SKEIN_WEBHOOK_LISTEN)")
	fs.BoolVar(&w.public, "webhook-public", false, "allow --webhook-listen on an address other than loopback")
	fs.StringVar(&w.tokenFile, "webhook-token-file", "", "file of the webhook's tokens, one a line (env SKEIN_WEBHOOK_TOKEN holds one directly): every request presents one")
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
	cfg := &trigger.WebhookConfig{Addr: w.addr, Public: w.public}
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
	return cfg, nil
}
