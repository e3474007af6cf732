// Command submit runs functions on Skein: call, map and mapreduce jobs,
// and status, wait, result and cancel of running ones. See docs/cli.md.
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
	profile.Exit(stop, cli.Submit(context.Background(), os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Signals: true,
		Extend: datapath.Extend,
	}))
}
