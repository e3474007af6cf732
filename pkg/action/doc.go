// Package action is the runtime's OpenWhisk action mode: an HTTP server
// that speaks the action proxy protocol an OpenWhisk invoker uses with
// every action container (apache/openwhisk docs/actions-new.md).
//
// # Protocol
//
// The invoker starts the container, POSTs /init once, then POSTs /run for
// each activation (never overlapping unless the action's concurrency limit
// is above 1; this proxy is safe either way).
//
//   - POST /init {"value":{"name","main","code","binary","env"}}: Skein's
//     action is a prebuilt image, so code and main are accepted and
//     ignored; env (a JSON object) is applied to the process environment.
//     200 {"ok":true}. A second /init gets 403 {"error":...}; a body that is
//     not JSON gets 400 {"error":...}.
//   - POST /run {"value":{...params},"namespace","action_name",
//     "activation_id","deadline","api_key",...}: the executor is called with
//     value as params and a context that ends at deadline (milliseconds
//     since the epoch) and carries the activation context ([FromContext]).
//     200 with the executor's JSON object; 502 {"error":"..."} when the
//     executor fails (OpenWhisk records "application error"); 400 for a body
//     that is not JSON or a value that is not an object; 500 before /init.
//   - After every /run the proxy writes the activation end marker
//     XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX on stdout and stderr, so the
//     invoker can frame the activation's logs.
//
// The api_key of the activation context is never logged; it is handed to
// the executor in [Activation] only.
//
// # Port
//
// The invoker always connects to port 8080 of the container; [Addr]
// returns ":8080" unless __OW_ACTION_PORT names another port (for tests and
// for running several proxies on one host).
//
// # Wiring
//
// cmd/runtime calls Serve(ctx, Addr(), exec, logger) where exec runs the
// runtime in drain mode with the params (bus URL, pool, max_tasks, ...).
package action
