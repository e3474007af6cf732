package openwhisk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Credentials authenticate requests to the controller: exactly one of
// APIKey ("uuid:key", sent as HTTP basic auth; Apache OpenWhisk and IBM
// Cloud Functions Cloud Foundry namespaces) or Token (a bearer token, e.g.
// an IBM Cloud IAM access token for IAM namespaces).
type Credentials struct {
	APIKey string
	Token  string
}

// LogValue keeps credentials out of logs.
func (Credentials) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String keeps credentials out of formatted errors.
func (Credentials) String() string { return "[redacted]" }

func (c Credentials) validate() error {
	switch {
	case c.APIKey != "" && c.Token != "":
		return errors.New("both APIKey and Token are set")
	case c.Token != "":
		return nil
	case c.APIKey == "":
		return errors.New("neither APIKey nor Token is set")
	}
	user, pass, ok := strings.Cut(c.APIKey, ":")
	if !ok || user == "" || pass == "" {
		return errors.New(`APIKey is not of the form "uuid:key"`)
	}
	return nil
}

// CredentialsFunc returns the current credentials. The backend calls it
// once at New and again after every 401, so that a rotated API key or an
// expired IAM token is picked up (it should fetch a fresh token then). It
// may be called concurrently.
type CredentialsFunc func(ctx context.Context) (Credentials, error)

// StaticCredentials returns a CredentialsFunc that always returns c.
func StaticCredentials(c Credentials) CredentialsFunc {
	return func(context.Context) (Credentials, error) { return c, nil }
}

// Config configures the OpenWhisk backend.
type Config struct {
	// APIHost is the controller's base URL, e.g.
	// https://us-south.functions.cloud.ibm.com or http://127.0.0.1:3233.
	APIHost string
	// Namespace of the action; "_" is the key's default namespace.
	Namespace string
	// Credentials returns the key or token (see CredentialsFunc).
	Credentials CredentialsFunc

	// Action is the action's name (optionally "package/name").
	Action string
	// Kind is the action's runtime kind: "blackbox" (a docker action
	// running Image, the default) or a native kind such as "go:1.22" when
	// Code holds the runtime binary zipped for the Go actionloop.
	Kind string
	// Image is the runtime's container image (blackbox kind).
	Image string
	// Code is the base64 zip of the action for a native kind; empty for
	// blackbox.
	Code string
	// MemoryMB and TimeoutMS are the action's limits; a job may ask for
	// more memory or a longer task timeout, which then redeploys the action
	// under a name suffixed with its limits.
	MemoryMB  int
	TimeoutMS int64
	// Concurrency is the action's intra-container concurrency limit (1 on
	// Apache OpenWhisk unless the deployment enables more).
	Concurrency int

	// Params are default action parameters (not secret), merged under the
	// per-invocation params.
	Params map[string]any
	// Env are init parameters: deployed as action parameters marked
	// "init": true, which the controller hands to the container at /init
	// as environment variables, never in the /run value or the invocation
	// body. Put secrets here (the bus URL with its password, storage keys):
	// they live in the controller's action record only (IBM Cloud Functions
	// encrypts parameters at rest), never in activation records, and are
	// never logged by Skein.
	Env map[string]string

	// Batch is the number of tasks one activation drains at most.
	Batch int
	// IdleMS is how long an activation waits on an empty queue before it
	// returns.
	IdleMS int64
	// PoolThreads bounds concurrent invocation requests
	// (invoke_pool_threads); a job's PoolThreads overrides it.
	PoolThreads int
	// RateLimit caps invocations per second (0: no cap until the
	// controller answers 429; then the limit adapts).
	RateLimit float64
	// MaxAttempts bounds the tries of one request (429, 5xx, network
	// errors); RetryBase and RetryMax bound the jittered backoff when the
	// controller sends no Retry-After.
	MaxAttempts int
	RetryBase   time.Duration
	RetryMax    time.Duration

	// HTTPClient is used for every request (default: a client with a 60s
	// timeout and keep-alive connections for PoolThreads).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// DefaultConfig returns a configuration with every default set; APIHost,
// Credentials and Image (or Code) remain to be set.
func DefaultConfig() Config {
	return Config{
		Namespace:   "_",
		Action:      "skein-runtime",
		Kind:        "blackbox",
		MemoryMB:    256,
		TimeoutMS:   600_000,
		Concurrency: 1,
		Batch:       10,
		IdleMS:      2000,
		PoolThreads: 64,
		MaxAttempts: 10,
		RetryBase:   50 * time.Millisecond,
		RetryMax:    5 * time.Second,
	}
}

// Validate reports every bad field of c.
func (c Config) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if u, err := url.Parse(c.APIHost); c.APIHost == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("APIHost %q is not an http(s) URL", c.APIHost)
	}
	if c.Namespace == "" || strings.Contains(c.Namespace, "/") {
		bad("Namespace %q is empty or has a slash", c.Namespace)
	}
	if c.Credentials == nil {
		bad("Credentials is nil")
	}
	if c.Action == "" || strings.Count(c.Action, "/") > 1 || strings.HasPrefix(c.Action, "/") || strings.HasSuffix(c.Action, "/") {
		bad("Action %q is not \"name\" or \"package/name\"", c.Action)
	}
	switch {
	case c.Kind == "":
		bad("Kind is empty")
	case c.Kind == "blackbox" && c.Image == "":
		bad("Image is empty for a blackbox action")
	case c.Kind != "blackbox" && c.Code == "" && c.Image == "":
		bad("Code and Image are both empty for kind %q", c.Kind)
	}
	if c.MemoryMB < 128 {
		bad("MemoryMB %d is below OpenWhisk's minimum of 128", c.MemoryMB)
	}
	if c.TimeoutMS < 100 {
		bad("TimeoutMS %d is below OpenWhisk's minimum of 100", c.TimeoutMS)
	}
	if c.Concurrency < 1 {
		bad("Concurrency %d, want >= 1", c.Concurrency)
	}
	if c.Batch < 1 {
		bad("Batch %d, want >= 1", c.Batch)
	}
	if c.IdleMS < 0 {
		bad("IdleMS %d, want >= 0", c.IdleMS)
	}
	if c.PoolThreads < 1 {
		bad("PoolThreads %d, want >= 1", c.PoolThreads)
	}
	if c.RateLimit < 0 {
		bad("RateLimit %g, want >= 0", c.RateLimit)
	}
	if c.MaxAttempts < 1 {
		bad("MaxAttempts %d, want >= 1", c.MaxAttempts)
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		bad("RetryBase %v and RetryMax %v: want 0 < RetryBase <= RetryMax", c.RetryBase, c.RetryMax)
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			bad("Env key %q is not an environment variable name", k)
		}
		if _, dup := c.Params[k]; dup {
			bad("key %q is in both Params and Env", k)
		}
	}
	for _, k := range reservedParams {
		if _, ok := c.Params[k]; ok {
			bad("Params key %q is set by the backend per invocation", k)
		}
	}
	if len(errs) > 0 {
		return errors.New("openwhisk: config: " + strings.Join(errs, "; "))
	}
	return nil
}

// Invocation params set by Dispatch; the runtime's drain mode reads them.
const (
	ParamJob      = "job"       // job id
	ParamPool     = "pool"      // queue to drain
	ParamMaxTasks = "max_tasks" // tasks to run at most
	ParamIdleMS   = "idle_ms"   // give up after this long on an empty queue
	ParamSeq      = "seq"       // invocation number within the dispatch, from 0
	ParamQueue    = "queue"     // "tasks" or "reduce": which of the pool's queues to drain (absent: both)
)

var reservedParams = []string{ParamJob, ParamPool, ParamMaxTasks, ParamIdleMS, ParamSeq, ParamQueue}
