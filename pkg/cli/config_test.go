package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The config file's storage settings are checked where they are written:
// an unknown key or a bad value names the file, the line and the key.
func TestConfigFileStorageSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	getenv := func(string) string { return "" }
	for _, c := range []struct {
		name, text string
		want       []string // in the error; none: accepted
	}{
		{"good", "bus: nats://127.0.0.1:4222\nstorage:\n  endpoint: http://127.0.0.1:9000\n  path_style: true\n  inline_limit: 64KiB\n", nil},
		{"typo", "bus: nats://127.0.0.1:4222\nstorage:\n  endpoint: http://127.0.0.1:9000\n  pathstyle: true\n", []string{"typo.yaml, line 4", `unknown setting "pathstyle"`, "path_style"}},
		{"bad bool", "storage:\n  path_style: yes please\n", []string{"bad bool.yaml, line 2", "path_style", `"yes please"`, "want true or false"}},
		{"bad size", "storage:\n  region: eu-de\n  inline_limit: lots\n", []string{"line 3", "inline_limit", "byte count"}},
		{"bad duration", "storage:\n  http_timeout: 3 fortnights\n", []string{"line 2", "http_timeout", "duration"}},
		{"unknown top-level key", "bus: x\nstroage:\n  endpoint: y\n", []string{"stroage"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := write(c.name+".yaml", c.text)
			_, err := loadConfig(path, getenv)
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v, want a usage error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "SKEIN_STORAGE_") {
				t.Errorf("error %q names an environment variable the user did not set", err)
			}
		})
	}
}
