// Command coordinator is Skein's long-running service: it accepts jobs on
// the bus, publishes their tasks, follows their events, and answers
// status and result queries. See docs/cli.md.
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
	profile.Exit(stop, cli.Coordinator(context.Background(), os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: true,
	}, datapath.ServiceHooks()))
}
