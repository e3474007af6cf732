// Command skeinrun-submit is the submit binary that the skeinrun Python
// wheel carries: submit itself, and the coordinator and runtime behind
// the same executable so that one file in the wheel runs a warm local
// installation. As submit it is cmd/submit; with the first argument
// "__coordinator" or "__runtime" it is cmd/coordinator or cmd/runtime
// with the remaining arguments, and with "__serve" submit's client mode
// (cli.Serve: many jobs over one bus connection, for the executor's warm
// jobs); submit has no command of those names.
package main

import (
	"context"
	"os"

	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/datapath"
)

func main() {
	ctx := context.Background()
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: true}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__coordinator":
			os.Exit(cli.Coordinator(ctx, os.Args[2:], env, datapath.ServiceHooks()))
		case "__runtime":
			os.Exit(cli.Runtime(ctx, os.Args[2:], env, datapath.ServiceHooks()))
		case "__serve":
			env.Extend = datapath.Extend
			os.Exit(cli.Serve(ctx, os.Args[2:], env))
		}
	}
	os.Exit(cli.Submit(ctx, os.Args[1:], cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Signals: true,
		Extend: datapath.Extend,
	}))
}
