package cli

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/skeinrun/skein/pkg/storage"
)

// fileConfig is the config file (--config or SKEIN_CONFIG), YAML:
//
//	bus: nats://skein:secret@nats.example:4222
//	pool: default
//	python: /usr/bin/python3
//	hosts: go,py,cmd    # function hosts (runtime --hosts)
//	run_as: nobody      # user of py: and cmd: functions (runtime --run-as)
//	pass_env: [HTTPS_PROXY]   # variables functions get (runtime --pass-env)
//	storage:            # any SKEIN_STORAGE_* setting, lower case, without the prefix
//	  endpoint: https://s3.eu-de.cloud-object-storage.appdomain.cloud
//	  region: eu-de
//	  artifacts: cos://my-bucket/skein/
//	  access_key: …
//	  secret_key: …
//
// Flags win over the environment, which wins over the file.
type fileConfig struct {
	Bus     string            `yaml:"bus"`
	Pool    string            `yaml:"pool"`
	Python  string            `yaml:"python"`
	Hosts   string            `yaml:"hosts"`
	RunAs   string            `yaml:"run_as"`
	PassEnv []string          `yaml:"pass_env"`
	Storage map[string]string `yaml:"storage"`
	// Triggers are recorded by the coordinator service as it starts
	// (trigger.go).
	Triggers []map[string]any `yaml:"triggers"`
	// Webhook is the coordinator's webhook listener (webhook.go).
	Webhook webhookFile `yaml:"webhook"`
}

// loadConfig reads the config file named by flag or SKEIN_CONFIG; none
// named gives an empty config.
func loadConfig(flagPath string, getenv func(string) string) (*fileConfig, error) {
	path := flagPath
	if path == "" {
		path = getenv("SKEIN_CONFIG")
	}
	cfg := &fileConfig{}
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("config file: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && err.Error() != "EOF" {
		return nil, usagef("config file %s: %v", path, err)
	}
	if err := checkStorage(path, data); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkStorage checks every setting under storage: its name must be one
// of the SKEIN_STORAGE_* settings and its value must parse; an error names
// the file, the line and the key.
func checkStorage(path string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil // already reported by the decoder, or empty
	}
	root := doc.Content[0]
	var st *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "storage" {
			st = root.Content[i+1]
		}
	}
	if st == nil || st.Kind != yaml.MappingNode {
		return nil
	}
	known := map[string]string{}
	var names []string
	for _, env := range storage.EnvNames() {
		k := strings.ToLower(strings.TrimPrefix(env, "SKEIN_STORAGE_"))
		known[k] = env
		names = append(names, k)
	}
	for i := 0; i+1 < len(st.Content); i += 2 {
		key, val := st.Content[i], st.Content[i+1]
		env, ok := known[key.Value]
		if !ok {
			return usagef("config file %s, line %d: storage: unknown setting %q (known: %s)", path, key.Line, key.Value, strings.Join(names, ", "))
		}
		if err := storage.CheckSetting(env, val.Value); err != nil {
			return usagef("config file %s, line %d: storage: %s: %v", path, val.Line, key.Value, err)
		}
	}
	return nil
}

// apply makes the file's settings the defaults: bus and pool where no flag
// or variable set them, storage settings as SKEIN_STORAGE_* variables
// where the environment has none.
func (c *fileConfig) apply(bus, pool *string, getenv func(string) string) {
	if *bus == "" {
		if v := getenv("SKEIN_BUS"); v != "" {
			*bus = v
		} else {
			*bus = c.Bus
		}
	}
	if pool != nil && *pool == "" {
		*pool = c.Pool
	}
	if c.Python != "" && getenv("SKEIN_PYTHON") == "" {
		os.Setenv("SKEIN_PYTHON", c.Python)
	}
	keys := make([]string, 0, len(c.Storage))
	for k := range c.Storage {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := "SKEIN_STORAGE_" + strings.ToUpper(k)
		if getenv(name) == "" {
			os.Setenv(name, c.Storage[k])
		}
	}
}

func (c *fileConfig) String() string { return fmt.Sprintf("config(bus set: %t)", c.Bus != "") }
