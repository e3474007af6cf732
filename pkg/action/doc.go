// Package action is the runtime's OpenWhisk action modes: an HTTP server
// that speaks the action proxy protocol an OpenWhisk invoker uses with
// every action container (apache/openwhisk docs/actions-new.md), for a
// blackbox (docker) action; and Loop, the actionloop protocol that the
// proxy of apache/openwhisk-runtime-go speaks with its "exec", for a
// native Go action (see Loop, and package proxytest for a stand-in proxy
// in tests).
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
// A /run body without "value" is refused (400): the invoker always sends
// it, and params sent bare would otherwise run with every default.
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
// "runtime action" (pkg/cli.RuntimeAction) calls Serve(ctx, Addr(), exec,
// logger) where exec drains up to max_tasks tasks of the params' pool
// with pkg/runtime on the bus named by SKEIN_BUS_URL (see
// docs/backends.md). "runtime actionloop" (pkg/cli.RuntimeActionLoop,
// chosen by cmd/runtime when StartedByProxy) calls Loop on stdin and
// descriptor 3 with the same executor.
package action
