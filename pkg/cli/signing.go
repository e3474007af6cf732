package cli

import (
	"flag"
	"log/slog"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/sign"
)

// Environment variables of the signing keys.
const (
	EnvSignKey   = "SKEIN_SIGN_KEY"   // coordinator: Ed25519 private key (PEM)
	EnvVerifyKey = "SKEIN_VERIFY_KEY" // runtime, submit: the coordinator's public key (PEM)
)

// keyFlag is --sign-key (coordinator) or --verify-key (runtime, submit):
// a key file from the flag or its environment variable.
type keyFlag struct {
	path string
	env  string
}

func (k *keyFlag) registerSign(fs *flag.FlagSet) {
	k.env = EnvSignKey
	fs.StringVar(&k.path, "sign-key", "", "Ed25519 private key (PEM) to sign tasks, feeds and end records with, so that runtimes and submit can refuse what others publish (env "+EnvSignKey+")")
}

func (k *keyFlag) registerVerify(fs *flag.FlagSet) {
	k.env = EnvVerifyKey
	fs.StringVar(&k.path, "verify-key", "", "the coordinator's Ed25519 public key (PEM): refuse tasks, feeds and end records it did not sign (env "+EnvVerifyKey+")")
}

func (k *keyFlag) file(getenv func(string) string) string {
	if k.path != "" {
		return k.path
	}
	return getenv(k.env)
}

// signer loads --sign-key; nil when none is given.
func (k *keyFlag) signer(getenv func(string) string) (*sign.Signer, error) {
	p := k.file(getenv)
	if p == "" {
		return nil, nil
	}
	s, err := sign.LoadSigner(p)
	if err != nil {
		return nil, usagef("--sign-key: %v", err)
	}
	return s, nil
}

// verifier loads --verify-key; nil when none is given.
func (k *keyFlag) verifier(getenv func(string) string) (*sign.Verifier, error) {
	p := k.file(getenv)
	if p == "" {
		return nil, nil
	}
	v, err := sign.LoadVerifier(p)
	if err != nil {
		return nil, usagef("--verify-key: %v", err)
	}
	return v, nil
}

// newClient is a client on b that admits only end records the
// coordinator signed when --verify-key is given.
func (o *Options) newClient(b bus.Bus, env Env, log *slog.Logger) (*client.Client, error) {
	c := client.New(b)
	c.Logger = log
	c.CoordinatorGrace = o.CoordinatorGrace // resolved before the bus was dialled
	v, err := o.VerifyKey.verifier(env.Getenv)
	if err != nil {
		return nil, err
	}
	if v != nil {
		c.Verifier = v
	}
	return c, nil
}
