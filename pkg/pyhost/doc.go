// Package pyhost runs Python callables ("py:module:function" or
// "py:module.function") for the runtime, as an fn.Host.
//
// # Callables shipped by value
//
// "py:@FILE" names a callable pickled with cloudpickle (a function
// defined in a script, a notebook or an Airflow DAG file, a lambda, a
// closure), stored as FILE among the job's shipped modules (the file is
// shipped like any include_modules entry; submit does it for
// --function py:@PATH). The file may start with one header line,
// '#skein-pickle {"python":"3.11.7","cloudpickle":"3.1.2","name":"f"}',
// then the pickle. The interpreter loads it once (like an imported
// module) and calls it like any other function. A runtime Python of
// another minor version than the header's, one without the cloudpickle
// module, or a pickle that needs a module the runtime lacks, fails the
// call as ErrUnknownFn (not retryable) with a message that says which and
// what to do.
//
// # Interpreters
//
// The host keeps one long-lived interpreter per worker slot (fn.Call.Slot),
// started lazily on the slot's first call. The interpreter runs host.py,
// a standard-library-only script embedded in the binary and written once
// to Config.ScriptDir. It imports each user module once (Python's module
// cache plus a cache of resolved functions), so module-level state lives
// across calls on the same slot.
//
// An interpreter serves one MemoryMB: the memory limit is set with
// resource.setrlimit(RLIMIT_AS) before any user code runs, and a call with
// another limit replaces the slot's interpreter. The call's ModulesDir goes
// first on sys.path and is the working directory. A call of another
// ModulesDir (another job's) is served by the same interpreter when that
// cannot change what the call sees: every module the interpreter imported
// from its current dir is a file of the same bytes at the same place in
// the new one (pickled callables of the same name and other bytes are
// loaded anew). Otherwise the interpreter answers kind "restart" without
// running anything, and the call runs in a fresh one. So a warm
// interpreter serves job after job of new functions (a notebook's
// lambdas) without a restart, and never a stale version of a module.
//
// The interpreter does not inherit the runtime's environment: it starts
// from Config.Proc's (a pkg/fnproc Setup: the allowed variables and those
// passed by name) and runs as Proc's user. When that is another user than
// the runtime's, the script is written into Proc's shared directory so
// that the user can read it, and the interpreter is looked up on PATH as
// that user would find it. Inputs and shipped modules come through the
// runtime, so the interpreter needs no storage credentials.
//
// # Protocol
//
// The interpreter's fd 3 carries requests and its fd 4 carries replies, so
// whatever the function writes to stdout or stderr cannot corrupt the
// protocol; stdout and stderr share one pipe whose bytes go to the call's
// Log. A frame is a 4-byte big-endian length and a payload. A call is a
// JSON request
//
//	{"id":N,"ref":"mod:fn","path":"…","args":[…],"kwargs":{…},"obj":{…wire.Object…},"env":{…},"deadline":NS}
//
// answered by {"ok":true,"result":…} or {"ok":false,"kind":…,"type":…,
// "message":…,"stack":…,"retryable":…}. While the function reads
// obj.data_stream, the interpreter sends {"op":"read","n":N} and the host
// answers with a raw frame of at most N bytes of the chunk (an empty frame
// at its end), so chunks stream from Go without temp files. After each
// call, the script writes a sync mark to stdout; the output between two
// marks is one call's, so that all of a call's output is in its Log when
// Call returns.
//
// # Pipelining
//
// Calls on one slot may be made concurrently (Pipelines reports it; the
// runtime does it while a slot's calls are short). The host sends each at
// once, behind the calls the interpreter runs or was sent; the interpreter
// runs them one at a time, in order, and answers each as it ends (a reply
// is written before the next call starts). So a slot's short calls cost
// no round trip each, and every call keeps its own output (the sync marks
// cut the output pipe in order), its own result or error and its own
// context:
//
//   - The running call's context ends: its interpreter's process group is
//     killed, as without pipelining.
//   - A queued call's context ends: Call returns at once; the host sends a
//     skip notice {"op":"skip","id":N}, which the interpreter reads before
//     it starts a call, and a request carries its deadline, so the call
//     does not start ("skipped", "expired"). If it comes up anyway (the
//     notice came too late) and does not answer within 200 ms, its
//     interpreter is killed.
//   - The interpreter dies (crash, memory limit, kill): the running call
//     gets the error; the calls queued behind it never started and are
//     sent again, once, to a fresh interpreter.
//
// A call that reads its chunk (Call.Obj) trades frames with the host
// while it runs: it is sent alone, once the calls before it are answered,
// and nothing is sent behind it. A call of another memory limit, or one
// the interpreter cannot serve (kind "restart"), waits for the calls sent
// before it, then runs in a fresh interpreter.
//
// # Arguments and results
//
// Args are passed positionally and Kwargs by keyword; with Call.Obj set,
// the function also gets obj=, an object with bucket, key, part, parts,
// start, end, size, url, store, group, data_byte_range and data_stream (a
// buffered binary file: read(), readline(), iteration over lines). Env is
// set in os.environ for the call only. The result must be JSON
// serializable (tuples become lists).
//
// # Failures
//
// A raised exception is a *wire.TaskError of kind ErrUser with the
// exception's class name (module-qualified outside builtins), message and
// formatted traceback, retryable. Arguments that do not bind to the
// function's signature are ErrBadInput, a missing module or attribute is
// ErrUnknownFn (neither retryable). A call whose ctx ends kills the
// interpreter's process group and returns ErrTimeout (deadline) or
// ErrCancelled; MemoryError, or an interpreter killed by the kernel or
// dying with a memory error under a memory limit, is ErrOOM. After a
// timeout, an OOM or a crash, the slot's next call starts a fresh
// interpreter.
package pyhost
