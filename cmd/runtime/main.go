// Command runtime is Skein's function runtime: a worker that pulls tasks
// from a pool's queue, runs them, and reports their events on the bus;
// "runtime action" serves the same as an OpenWhisk docker action, and
// "runtime actionloop" (chosen by itself when an actionloop proxy starts
// it as its exec) as a native Go action. See
// docs/cli.md and docs/backends.md.
package main

import (
	"context"
	"os"

	"github.com/skeinrun/skein/internal/profile"
	"github.com/skeinrun/skein/pkg/action"
	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/datapath"
)

func main() {
	stop := profile.Start()
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: true}
	switch {
	case len(os.Args) > 1 && os.Args[1] == "action":
		profile.Exit(stop, cli.RuntimeAction(context.Background(), os.Args[2:], env, datapath.ServiceHooks()))
	case len(os.Args) > 1 && os.Args[1] == "actionloop":
		profile.Exit(stop, cli.RuntimeActionLoop(context.Background(), os.Args[2:], env, datapath.ServiceHooks()))
	case len(os.Args) == 1 && action.StartedByProxy(os.Getenv):
		// The exec of a native Go action: the actionloop proxy starts it
		// without arguments, with __OW_PROXY_VERSION and descriptor 3.
		profile.Exit(stop, cli.RuntimeActionLoop(context.Background(), nil, env, datapath.ServiceHooks()))
	}
	profile.Exit(stop, cli.Runtime(context.Background(), os.Args[1:], env, datapath.ServiceHooks()))
}
