package cli

import (
	"fmt"
	"log/slog"

	"github.com/skeinrun/skein/pkg/cmdhost"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/pyhost"
)

// stockHosts are the non-Go function hosts of the stock runtime: Python
// callables (py:) and commands (cmd:). The interpreter is python3 on PATH
// or SKEIN_PYTHON.
func stockHosts(getenv func(string) string, log *slog.Logger) (map[string]fn.Host, func(), error) {
	pc := pyhost.DefaultConfig()
	if p := getenv("SKEIN_PYTHON"); p != "" {
		pc.Python = p
	}
	pc.Logger = log
	py, err := pyhost.New(pc)
	if err != nil {
		return nil, nil, fmt.Errorf("python host: %w", err)
	}
	cc := cmdhost.DefaultConfig()
	cc.Logger = log
	cmd, err := cmdhost.New(cc)
	if err != nil {
		py.Close()
		return nil, nil, fmt.Errorf("command host: %w", err)
	}
	return map[string]fn.Host{"py": py, "cmd": cmd}, func() { py.Close(); cmd.Close() }, nil
}
