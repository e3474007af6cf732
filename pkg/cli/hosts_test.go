package cli

import (
	"flag"
	"io"
	"os"
	"slices"
	"testing"
)

// TestFuncOptionsPrecedence: --hosts, --run-as and --pass-env come from
// the flag, else the environment, else the config file, else the
// program's default.
func TestFuncOptionsPrecedence(t *testing.T) {
	file := &fileConfig{Hosts: "go,py,cmd", RunAs: "daemon", PassEnv: []string{"FROM_FILE"}}
	rootDefault := ""
	if os.Geteuid() == 0 {
		rootDefault = "nobody"
	}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		file    *fileConfig
		hosts   string
		runAs   string
		passEnv []string
	}{
		{"defaults", nil, nil, nil, "go,py", rootDefault, nil},
		{"file", nil, nil, file, "go,py,cmd", "daemon", []string{"FROM_FILE"}},
		{"env over file", nil, map[string]string{EnvHosts: "go", EnvRunAs: "bin", EnvPassEnv: "A,B"}, file, "go", "bin", []string{"A", "B"}},
		{"flags over env", []string{"--hosts", "cmd,go", "--run-as", "65534", "--pass-env", "C", "--pass-env", "D,E"},
			map[string]string{EnvHosts: "go", EnvRunAs: "bin", EnvPassEnv: "A"}, file, "go,cmd", "65534", []string{"C", "D", "E"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("runtime", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var ff funcFlags
			ff.register(fs, "runtime", DefaultHosts, true)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			o, err := ff.resolve(c.file, func(k string) string { return c.env[k] }, DefaultHosts)
			if err != nil {
				t.Fatal(err)
			}
			if o.list != c.hosts || o.runAs != c.runAs || !slices.Equal(o.passEnv, c.passEnv) {
				t.Fatalf("got hosts %q run-as %q pass-env %q, want %q %q %q", o.list, o.runAs, o.passEnv, c.hosts, c.runAs, c.passEnv)
			}
		})
	}
}
