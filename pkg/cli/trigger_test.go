package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The config file's triggers are read as `submit trigger create --def`
// reads a definition, and a bad one is named.
func TestConfigFileTriggers(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"good", "triggers:\n  - name: wc\n    source: {nats: skein.notify.s3, format: s3}\n    job: {kind: map, function: wordcount, extra_params: {y: 1}}\n    batch: {count: 5, window: 30s}\n", ""},
		{"unknown field", "triggers:\n  - name: wc\n    sauce: {nats: x}\n    job: {kind: map, function: wordcount}\n", `unknown field "sauce"`},
		{"invalid", "triggers:\n  - name: wc\n    source: {}\n    job: {kind: map, function: wordcount}\n", "exactly one of nats"},
		{"bad window", "triggers:\n  - name: wc\n    source: {nats: skein.notify.s3}\n    job: {kind: map, function: wordcount}\n    batch: {window: soon}\n", "trigger 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "skein.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			fc, err := loadConfig(path, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			defs, err := configTriggers(fc)
			if tc.want == "" {
				if err != nil || len(defs) != 1 || defs[0].Batch.Count != 5 || string(defs[0].Job.ExtraParams) != `{"y":1}` {
					t.Fatalf("%+v %v", defs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
