package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestBusAuthCredentials(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pwFile := file("pw", "from-file\n")
	envPwFile := file("envpw", "from-env-file")
	empty := file("empty", "\n")
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, c := range []struct {
		name    string
		flags   BusAuth
		getenv  func(string) string
		pw, ca  string
		token   string
		badFile bool
	}{
		{name: "nothing", getenv: env()},
		{name: "flag file, newline trimmed", flags: BusAuth{PasswordFile: pwFile}, getenv: env("SKEIN_BUS_PASSWORD", "from-env"), pw: "from-file"},
		{name: "env value", getenv: env("SKEIN_BUS_PASSWORD", "from-env", "SKEIN_BUS_PASSWORD_FILE", envPwFile), pw: "from-env"},
		{name: "env file", getenv: env("SKEIN_BUS_PASSWORD_FILE", envPwFile), pw: "from-env-file"},
		{name: "flag wins over env", flags: BusAuth{TLSCA: "/flag/ca.pem"}, getenv: env("SKEIN_TLS_CA", "/env/ca.pem"), ca: "/flag/ca.pem"},
		{name: "env CA", getenv: env("SKEIN_TLS_CA", "/env/ca.pem"), ca: "/env/ca.pem"},
		{name: "token file", flags: BusAuth{TokenFile: pwFile}, getenv: env(), token: "from-file"},
		{name: "missing file", flags: BusAuth{PasswordFile: filepath.Join(dir, "nope")}, getenv: env(), badFile: true},
		{name: "empty file", flags: BusAuth{TokenFile: empty}, getenv: env(), badFile: true},
	} {
		got, err := c.flags.credentials(c.getenv)
		var ue *usageError
		if c.badFile {
			if !errors.As(err, &ue) {
				t.Errorf("%s: err %v, want a usage error", c.name, err)
			}
			continue
		}
		if err != nil || got.Password != c.pw || got.TLSCA != c.ca || got.Token != c.token {
			t.Errorf("%s: got %+v, %v; want password %q, CA %q, token %q", c.name, got, err, c.pw, c.ca, c.token)
		}
	}
}
