package fn

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/skeinrun/skein/pkg/wire"
)

// Host runs functions that are not registered Go functions: Python
// callables ("py:module:function") and commands ("cmd:argv…"). The runtime
// holds one Host per scheme and calls it from several worker slots at
// once; a Host keeps per-slot state (a live interpreter per slot).
type Host interface {
	// Call runs one attempt. It returns the result as JSON text, or an
	// error; a *wire.TaskError return is passed through as classified
	// (timeout, oom, a Python exception with its traceback).
	Call(ctx context.Context, c *Call) (wire.Value, error)
	// Close stops every process the host started.
	Close() error
}

// Call is one invocation handed to a Host.
type Call struct {
	// Ref is the reference after its scheme: "module:function" for py,
	// the command line for cmd.
	Ref  string
	Slot int
	// Job and Task name the task the call runs (for the host's logs).
	Job  string
	Task int
	// Args and Kwargs follow the same rules as for Go functions.
	Args   []wire.Value
	Kwargs map[string]wire.Value
	Obj    *Object
	Env    map[string]string
	// MemoryMB is runtime_memory: a limit on the host process (0 = none).
	MemoryMB int
	// ModulesDir is a local directory holding the job's unpacked
	// include_modules, to put on the import path ("" = none).
	ModulesDir string
	// Log receives the function's stdout/stderr output.
	Log io.Writer
	// PeakKB is set by a host that can measure it: the peak resident
	// memory, in KiB, of the process that ran the call (0: unknown).
	PeakKB int64
}

// Ref is a parsed function reference.
type Ref struct {
	Scheme string // "go", "py" or "cmd"
	Name   string
}

// ParseRef parses a function reference: "go:name", "py:module:function",
// "py:module.function", "module.function" (Python), "cmd:argv…", or a plain
// name (a registered Go function).
func ParseRef(s string) (Ref, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Ref{}, fmt.Errorf("empty function reference")
	}
	if scheme, rest, ok := strings.Cut(s, ":"); ok {
		switch scheme {
		case "go", "py", "cmd":
			if strings.TrimSpace(rest) == "" {
				return Ref{}, fmt.Errorf("function reference %q has nothing after %q", s, scheme+":")
			}
			return Ref{Scheme: scheme, Name: rest}, nil
		}
		// module:function without the py: prefix.
		if validDotted(scheme) && validIdent(rest) {
			return Ref{Scheme: "py", Name: s}, nil
		}
		return Ref{}, fmt.Errorf("function reference %q: unknown scheme %q (want go:, py: or cmd:)", s, scheme)
	}
	if strings.Contains(s, ".") {
		if !validDotted(s) {
			return Ref{}, fmt.Errorf("function reference %q is not a Python module.function", s)
		}
		return Ref{Scheme: "py", Name: s}, nil
	}
	if !validIdent(s) {
		return Ref{}, fmt.Errorf("function reference %q is not a valid name", s)
	}
	return Ref{Scheme: "go", Name: s}, nil
}

func (r Ref) String() string { return r.Scheme + ":" + r.Name }

func validDotted(s string) bool {
	for _, p := range strings.Split(s, ".") {
		if !validIdent(p) {
			return false
		}
	}
	return true
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		case i > 0 && c >= '0' && c <= '9':
		case i > 0 && c == '-':
		default:
			return false
		}
	}
	return true
}
