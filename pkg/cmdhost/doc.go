// Package cmdhost runs commands ("cmd:argv…" references) for the runtime,
// as an fn.Host: any executable (a Rust binary, a shell pipeline) becomes a
// function.
//
// # References
//
// The reference after "cmd:" is split into argv with shell-like quoting
// and no expansion (see ParseCommand): cmd:wc -w, cmd:grep -c 'an error',
// cmd:sh -c 'tr a-z A-Z | wc -w'. Leading @options choose how stdout
// becomes the result: @auto (default), @json, @text, @lines.
//
// # Input
//
// Without partitioned data the command reads {"args":[…],"kwargs":{…}} on
// stdin. With Call.Obj set, stdin carries the chunk's raw bytes (so
// cmd:wc -w over chunks counts the words of each), the chunk's metadata is
// in $SKEIN_OBJ (the wire.Object as JSON) and the arguments are in
// $SKEIN_INPUT (when under 64 KiB).
//
// # Environment and user
//
// A command does not inherit the runtime's environment: it starts from
// Config.Proc's (a pkg/fnproc Setup: the allowed variables and those passed
// by name), then Config.Env, the host's own variables and Call.Env. It runs
// as Proc's user (SysProcAttr.Credential when that is not the runtime's),
// in Proc's work directory unless Config.Dir says otherwise, and its
// executable is looked up on PATH as that user would find it.
// With Call.ModulesDir set (the job's unpacked include_modules), the
// command runs there and a relative executable (cmd:./tool.sh) is found
// there; $SKEIN_MODULES names the directory.
//
// # Output
//
// @auto: stdout, trimmed of surrounding white space, is the result when it
// is valid JSON (wc -w prints a number, a tool may print an object), else
// the trimmed text as a JSON string; no output is null. @json requires
// valid JSON; @text always gives a string (trailing newlines removed);
// @lines gives an array of lines. Stdout beyond Config.MaxOutput fails the
// call. Stderr goes to the call's Log and its tail into failures.
//
// # Failures and limits
//
// A non-zero exit or a signal is a retryable ErrUser with type ExitError,
// the last stderr line in the message and the stderr tail as the stack. An
// executable that is not found is ErrUnknownFn. Each command runs in its
// own process group; when ctx ends, the whole group is killed and the call
// returns ErrTimeout (deadline) or ErrCancelled. With Call.MemoryMB > 0
// the command runs under RLIMIT_AS (set by `sh -c 'ulimit -v …; exec …'`
// between fork and exec); a failure whose stderr shows an allocation
// failure (MemoryError, Cannot allocate memory, out of memory, bad_alloc,
// "memory allocation of … failed", ENOMEM) or a SIGKILL it did not get from
// the host is ErrOOM.
package cmdhost
