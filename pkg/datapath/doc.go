// Package datapath wires object storage into a job's data path: it turns
// a storage.Resolver and its storage.Artifacts into the hooks of the
// coordinator, of the runtime and of the client, so that map iterdata can
// name storage and large values travel by reference instead of on the
// bus.
//
// # Coordinator
//
// Hooks.Expand expands iterdata elements that name storage
// (partition.NamesStorage: "cos://bucket/prefix/", "s3://…",
// "local:///path", "https://…", or {"obj": URL, …}) with partition.Expand
// and the job's chunk_size / chunk_n: one task per object, or per chunk.
// Results come back in iterdata order, then key order, then part order.
// A storage task's keyword arguments are the element's other keys merged
// with extra_params; the object itself is not a keyword argument but
// travels as Task.Obj. Errors -- a malformed URL, a missing bucket or
// object, a prefix that matches nothing, bad credentials, bad chunking
// options -- name the iterdata position and the URL, and the coordinator
// refuses the job with them (coordinator.ErrInvalid: exit code 2 of
// submit).
//
// Hooks.Spill stores every task input whose arguments exceed the inline
// limit as the artifact in/<task> ({"args":…,"kwargs":…}) and sends
// Task.InputRef instead. Hooks.Ended, for a --clean job, removes the job's
// inputs when it succeeded and all its artifacts otherwise; the results of
// a job that succeeded are removed by the submitting process once it has
// fetched them (Path.Clean through cli.Options.Cleanup).
//
// # Runtime
//
// Prepare loads Task.InputRef and opens a task's chunk with
// partition.OpenChunk. The function gets it as obj: a Go function reads
// fn.Args.Obj (the wire description -- URL, bucket, key, part, parts,
// byte range, object size -- and Body, a reader over exactly its lines);
// "obj" is not one of its named arguments. A host (Python) gets it as
// fn.Call.Obj and binds it to the parameter obj. The runtime closes Body
// after the call. Finish stores a result above the inline limit as
// out/<task>.<attempt> (reducers: red/<group>.<attempt>) and sends
// Event.ResultRef instead; Resolve loads such a reference (reducer inputs,
// and the client's results).
//
// # Programs
//
// FromEnv builds a Path from storage.DefaultConfig overlaid with the
// SKEIN_STORAGE_* environment (the embedded mode thus uses the local store
// under the user's cache directory). Extend (for cli.Env.Extend) and
// ServiceHooks (for cli.Coordinator and cli.Runtime) wire it into the
// submit, coordinator and runtime programs.
package datapath
