package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Executor runs one activation. params is the activation's value (the
// action's default parameters merged with the invocation's). The returned
// map is the activation result; an error becomes a 502 {"error": msg}.
// It may be called concurrently when the action's concurrency limit is
// above 1.
type Executor func(ctx context.Context, params map[string]any) (map[string]any, error)

// Activation is the activation context the invoker sends with /run.
type Activation struct {
	Namespace    string
	ActionName   string
	ActivationID string
	TransID      string
	// APIKey is the invoking key ("uuid:key"), set only when the action
	// was created with the provide-api-key annotation. Never log it.
	APIKey string
	// APIHost is __OW_API_HOST from the environment (or /init env).
	APIHost string
	// Deadline is when the activation is killed; zero when not sent.
	Deadline time.Time
}

type activationKey struct{}

// FromContext returns the activation context of the /run call that ctx
// belongs to.
func FromContext(ctx context.Context) (Activation, bool) {
	a, ok := ctx.Value(activationKey{}).(Activation)
	return a, ok
}

// EndMarker is written on stdout and stderr after each activation.
const EndMarker = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

// MaxBody bounds /init and /run request bodies (OpenWhisk's own payload
// limit is 1 MiB by default, 50 MiB at most).
const MaxBody = 50 << 20

// Config configures a Proxy.
type Config struct {
	Logger *slog.Logger
	// Stdout and Stderr receive the end-of-activation markers. Defaults:
	// os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Setenv applies /init env; default os.Setenv.
	Setenv func(key, value string) error
}

// Proxy is the action proxy HTTP handler.
type Proxy struct {
	exec   Executor
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	setenv func(string, string) error

	mu          sync.Mutex
	initialized bool
	apiHost     string
	markMu      sync.Mutex
}

// NewProxy returns a proxy that runs exec for every /run.
func NewProxy(exec Executor, cfg Config) *Proxy {
	p := &Proxy{exec: exec, log: cfg.Logger, stdout: cfg.Stdout, stderr: cfg.Stderr, setenv: cfg.Setenv}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.stdout == nil {
		p.stdout = os.Stdout
	}
	if p.stderr == nil {
		p.stderr = os.Stderr
	}
	if p.setenv == nil {
		p.setenv = os.Setenv
	}
	p.apiHost = os.Getenv("__OW_API_HOST")
	return p
}

// Addr is the address the proxy listens on: ":8080", or the port in
// __OW_ACTION_PORT.
func Addr() string {
	if p := os.Getenv("__OW_ACTION_PORT"); p != "" {
		return ":" + p
	}
	return ":8080"
}

// Serve runs the proxy on addr until ctx is done, then shuts it down
// (letting a running activation finish for up to 10 seconds). It returns
// nil after a shutdown caused by ctx.
func Serve(ctx context.Context, addr string, exec Executor, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("action: listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, NewProxy(exec, Config{Logger: logger}))
}

// ServeListener is Serve on an open listener with a configured proxy.
func ServeListener(ctx context.Context, ln net.Listener, p *Proxy) error {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	p.log.Info("action proxy listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("action: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("action: shutdown: %w", err)
	}
	return nil
}

type initRequest struct {
	Value *struct {
		Name   string         `json:"name"`
		Main   string         `json:"main"`
		Code   string         `json:"code"`
		Binary bool           `json:"binary"`
		Env    map[string]any `json:"env"`
	} `json:"value"`
}

type runRequest struct {
	Value        json.RawMessage `json:"value"`
	Namespace    string          `json:"namespace"`
	ActionName   string          `json:"action_name"`
	ActivationID string          `json:"activation_id"`
	TransID      string          `json:"transaction_id"`
	APIKey       string          `json:"api_key"`
	Deadline     json.RawMessage `json:"deadline"`
}

// ServeHTTP implements the /init and /run routes.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/init", "/run":
	default:
		writeError(w, http.StatusNotFound, "no route "+r.URL.Path+": the action proxy serves POST /init and POST /run")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": only POST is allowed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	if r.URL.Path == "/init" {
		p.init(w, body)
		return
	}
	p.run(w, r, body)
}

func (p *Proxy) init(w http.ResponseWriter, body []byte) {
	var req initRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "init: body is not the JSON {\"value\":{...}}: "+err.Error())
		return
	}
	if req.Value == nil {
		writeError(w, http.StatusBadRequest, "init: body has no \"value\" object")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.initialized {
		writeError(w, http.StatusForbidden, "Cannot initialize the action more than once.")
		return
	}
	for k, v := range req.Value.Env {
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		if err := p.setenv(k, s); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("init: env %q: %v", k, err))
			return
		}
		if k == "__OW_API_HOST" {
			p.apiHost = s
		}
	}
	p.initialized = true
	// Code is ignored: the runtime is a prebuilt image (docker action).
	p.log.Info("action initialized", "name", req.Value.Name, "main", req.Value.Main,
		"code_bytes", len(req.Value.Code), "env_vars", len(req.Value.Env))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("{\"ok\":true}\n"))
}

func (p *Proxy) run(w http.ResponseWriter, r *http.Request, body []byte) {
	defer p.markEnd()
	p.mu.Lock()
	ok, apiHost := p.initialized, p.apiHost
	p.mu.Unlock()
	if !ok {
		writeError(w, http.StatusInternalServerError, "action not initialized: POST /init first")
		return
	}
	params, act, err := parseRun(body, apiHost)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	if !act.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, act.Deadline)
		defer cancel()
	}
	ctx = context.WithValue(ctx, activationKey{}, act)
	start := time.Now()
	res, err := p.call(ctx, params)
	if err != nil {
		p.log.Warn("activation failed", "activation", act.ActivationID, "action", act.ActionName,
			"duration", time.Since(start), "err", err)
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	out, err := json.Marshal(res)
	if err != nil {
		writeError(w, http.StatusBadGateway, "the action's result is not JSON: "+err.Error())
		return
	}
	p.log.Info("activation done", "activation", act.ActivationID, "action", act.ActionName, "duration", time.Since(start))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(out, '\n'))
}

// parseRun reads a /run body (or an actionloop input line, which is the
// same JSON): the value, which must be an object, and the activation
// context. A body without "value" is refused: the invoker always sends
// it, and params sent bare would otherwise run with every default.
func parseRun(body []byte, apiHost string) (map[string]any, Activation, error) {
	var req runRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, Activation{}, errors.New("run: body is not the JSON {\"value\":{...},...}: " + err.Error())
	}
	if len(req.Value) == 0 {
		return nil, Activation{}, errors.New("run: body has no \"value\": the invoker sends the params as {\"value\":{...params},\"activation_id\":...}")
	}
	params := map[string]any{}
	if string(req.Value) != "null" {
		if err := json.Unmarshal(req.Value, &params); err != nil {
			return nil, Activation{}, errors.New("run: value is not a JSON object: " + err.Error())
		}
	}
	act := Activation{Namespace: req.Namespace, ActionName: req.ActionName, ActivationID: req.ActivationID,
		TransID: req.TransID, APIKey: req.APIKey, APIHost: apiHost}
	d, err := parseDeadline(req.Deadline)
	if err != nil {
		return nil, Activation{}, errors.New("run: " + err.Error())
	}
	act.Deadline = d
	return params, act, nil
}

// call runs the executor, turning a panic into an error.
func (p *Proxy) call(ctx context.Context, params map[string]any) (map[string]any, error) {
	return call(ctx, p.exec, params)
}

func call(ctx context.Context, exec Executor, params map[string]any) (res map[string]any, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the action panicked: %v", v)
		}
	}()
	res, err = exec(ctx, params)
	if err == nil && res == nil {
		res = map[string]any{}
	}
	return res, err
}

func (p *Proxy) markEnd() {
	p.markMu.Lock()
	defer p.markMu.Unlock()
	fmt.Fprintln(p.stdout, EndMarker)
	fmt.Fprintln(p.stderr, EndMarker)
}

// parseDeadline reads the deadline in milliseconds since the epoch; the
// invoker sends it as a JSON number or a string of digits.
func parseDeadline(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("deadline %s: %w", raw, err)
		}
	} else {
		s = string(raw)
	}
	if s == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseFloat(s, 64)
	if err != nil || ms < 0 {
		return time.Time{}, errors.New("deadline " + strconv.Quote(s) + " is not milliseconds since the epoch")
	}
	return time.UnixMilli(int64(ms)), nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
