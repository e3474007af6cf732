// Command skeinrun-submit is the submit binary that the skeinrun Python
// wheel carries: submit itself, and the coordinator and runtime behind
// the same executable. As submit it is cmd/submit; with the first
// argument "__coordinator" or "__runtime" it is cmd/coordinator or
// cmd/runtime with the remaining arguments, and with "__serve" submit's
// client mode (cli.Serve: many jobs over one bus connection, or with
// --embedded over an installation inside it: the executor's warm
// installation); submit has no command of those names. SKEIN_CPUPROFILE
// and the like (internal/profile) work in every mode.
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
	profile.Exit(stop, run())
}

func run() int {
	ctx := context.Background()
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: true}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__coordinator":
			return cli.Coordinator(ctx, os.Args[2:], env, datapath.ServiceHooks())
		case "__runtime":
			return cli.Runtime(ctx, os.Args[2:], env, datapath.ServiceHooks())
		case "__serve":
			env.Extend = datapath.Extend
			return cli.Serve(ctx, os.Args[2:], env)
		}
	}
	return cli.Submit(ctx, os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Signals: true,
		Extend: datapath.Extend,
	})
}
