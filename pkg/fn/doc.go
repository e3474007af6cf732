// Package fn is what functions look like to Skein.
//
// # References
//
// A job names its function by reference: a plain name or "go:name" for a
// Go function registered in the runtime, "py:module:function" (or
// "module.function") for a Python callable, "cmd:argv…" for a command.
// ParseRef parses them.
//
// # Go functions
//
// A Go function is registered with a Spec: its name, its parameter names,
// and Run. Arguments follow Lithops' rules: positional arguments fill the
// declared parameters in order, keyword arguments fill them by name, and a
// name given twice, an unknown keyword or too many positionals is a
// bad-input error (never retried). Errors may be marked NonRetryable;
// any other error is retried by the job's --retries policy.
//
// # Reducers
//
// A reducer consumes the map results. Three shapes: a Fold (acc = Step(acc,
// next) from Init(): results are consumed one by one as they arrive); a
// StreamFunc reading a channel of results; or a plain Run whose first
// argument is the whole list, in iterdata order (the seeds'
// reduce(results), and every Python reducer). Results arrive in completion
// order; a Spec with Ordered gets them in iterdata order.
//
// # Built-ins
//
// Builtins returns add, noop, sleep, echo, env, fail, sum, product and the
// text functions (wordcount, wordfreq, merge), for examples, tests and
// benchmarks. Users build their own runtime binary with their functions:
// register them on a Registry and hand it to runtime.Config.
//
// # Environment
//
// Functions never see the runtime's environment (its bus URL, its storage
// keys). BaseEnv picks what they start from: the variables of EnvAllowed
// and those the operator passes by name (CheckPassEnv refuses SKEIN_*).
// Go functions run inside the runtime and are trusted code; they get that
// base in Args.Base and read it, with the job's extra_env over it, through
// Args.Environ and Args.Getenv (not os.Getenv). The env built-in returns
// Args.Environ.
//
// # Other languages
//
// Host runs references of another scheme; pkg/pyhost (Python) and
// pkg/cmdhost (commands) implement it.
package fn
