// Command runtime is Skein's function runtime: a worker that pulls tasks
// from a pool's queue, runs them, and reports their events on the bus;
// "runtime action" serves the same as an OpenWhisk action. See
// docs/cli.md and docs/backends.md.
package main

import (
	"context"
	"os"

	"github.com/skeinrun/skein/internal/profile"
	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/datapath"
)

func main() {
	stop := profile.Start()
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: true}
	if len(os.Args) > 1 && os.Args[1] == "action" {
		profile.Exit(stop, cli.RuntimeAction(context.Background(), os.Args[2:], env, datapath.ServiceHooks()))
	}
	profile.Exit(stop, cli.Runtime(context.Background(), os.Args[1:], env, datapath.ServiceHooks()))
}
