package fn

import (
	"fmt"
	"sort"
	"strings"
)

// EnvAllowed lists the variables of the runtime's environment that every
// function gets: the search path, the user's home and names, the locale
// (also every LC_* variable), the time zone and the temp directory.
// Nothing else of the runtime's environment reaches a function unless the
// operator passes it by name (runtime --pass-env): not the bus URL, not
// the storage keys, not any other variable.
var EnvAllowed = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}

// envAllowed reports whether name is in EnvAllowed or is an LC_* name.
func envAllowed(name string) bool {
	if strings.HasPrefix(name, "LC_") {
		return true
	}
	for _, a := range EnvAllowed {
		if a == name {
			return true
		}
	}
	return false
}

// CheckPassEnv reports a name that may not be passed to functions: empty
// or malformed names, and the runtime's own settings (SKEIN_*: the bus
// URL, storage keys and the like never reach a function).
func CheckPassEnv(name string) error {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return fmt.Errorf("pass-env: %q is not a variable name", name)
	}
	if strings.HasPrefix(name, "SKEIN_") {
		return fmt.Errorf("pass-env: %s is one of the runtime's own settings (SKEIN_*), which never reach functions", name)
	}
	return nil
}

// BaseEnv returns the entries of environ (KEY=VALUE, as os.Environ gives
// them) that every function starts from: those of EnvAllowed and those
// named in pass, in environ's order. Names of pass that CheckPassEnv
// refuses are left out.
func BaseEnv(environ []string, pass []string) []string {
	passed := make(map[string]bool, len(pass))
	for _, p := range pass {
		if CheckPassEnv(p) == nil {
			passed[p] = true
		}
	}
	out := make([]string, 0, len(EnvAllowed)+len(pass))
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if ok && (envAllowed(k) || passed[k]) {
			out = append(out, kv)
		}
	}
	return out
}

// MergeEnv returns base with over applied: a name of over replaces the
// same name of base; the others are appended in sorted order.
func MergeEnv(base []string, over map[string]string) []string {
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := over[k]; !ok {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+over[k])
	}
	return out
}

// Environ returns the environment of a Go function: the runtime's base
// environment (Args.Base, the same a command or a Python interpreter
// starts from) with the job's extra_env (Args.Env) applied. A Go function
// compiled into the runtime runs in the runtime's process and could read
// os.Getenv; use Environ or Getenv instead, which hold no secret of the
// runtime.
func (a *Args) Environ() []string { return MergeEnv(a.Base, a.Env) }

// Getenv returns the value of name in Environ ("" when unset).
func (a *Args) Getenv(name string) string {
	if v, ok := a.Env[name]; ok {
		return v
	}
	for i := len(a.Base) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(a.Base[i], "="); k == name {
			return v
		}
	}
	return ""
}
