// Command runtime is Skein's function runtime: a worker that pulls tasks
// from a pool's queue, runs them, and reports their events on the bus.
// See docs/cli.md.
package main

import (
	"context"
	"os"

	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/datapath"
)

func main() {
	os.Exit(cli.Runtime(context.Background(), os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: true,
	}, datapath.ServiceHooks()))
}
