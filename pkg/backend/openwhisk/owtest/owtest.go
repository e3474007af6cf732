// Package owtest is a small fake OpenWhisk controller for tests: it
// follows the published REST API (/api/v1: basic or bearer auth,
// namespaces, actions create/update/get/list/delete, blocking and
// non-blocking invocations with activation ids, activation records) and
// runs each activation the way an invoker does, through the action proxy
// protocol: for a blackbox action it starts Config.Command as a real
// subprocess (a "container" listening on __OW_ACTION_PORT), POSTs /init
// once with the action's init parameters as env, then POSTs /run for each
// activation. For a native go:1.N action the container is the stand-in
// for the action-golang image's actionloop proxy (package
// action/proxytest, with the image's OW_WAIT_FOR_ACK=1,
// OW_LOG_INIT_ERROR=1 and OW_EXECUTION_ENV=openwhisk/action-golang-v1.N),
// and /init carries the action's code (the zip with its "exec").
//
// It answers 429 when the activations in flight would exceed
// Config.MaxInFlight or when told to (Throttle), and 401 when the key is
// not the current one (RotateKey). It is the only mock in Skein's tests:
// the controller cannot run here.
package owtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinrun/skein/pkg/action/proxytest"
)

// Config configures the fake controller.
type Config struct {
	// Namespace is the key's namespace ("_" resolves to it). Default
	// "guest".
	Namespace string
	// APIKey is the accepted "uuid:key"; Token, when set, is an accepted
	// bearer token too.
	APIKey string
	Token  string
	// Command runs a blackbox action's container: the binary and its
	// arguments. The container gets __OW_ACTION_PORT in its environment
	// and must serve the action proxy protocol on 127.0.0.1 at that port.
	// Not needed when only native go:1.N actions are created.
	Command []string
	// Env is added to every container's environment.
	Env []string
	// MaxContainers bounds the containers per action (each runs one
	// activation at a time); more activations wait for a container.
	// Default 4.
	MaxContainers int
	// MaxInFlight bounds accepted activations not yet finished; an
	// invocation beyond it gets 429 (0: no limit).
	MaxInFlight int
	// RetryAfter is sent with 429 answers when not empty (seconds).
	RetryAfter string
	// BlockingTimeout bounds a blocking invocation's wait (default 60s).
	BlockingTimeout time.Duration
	// ContainerOutput receives the containers' stdout and stderr
	// (default: discarded).
	ContainerOutput io.Writer
	Logger          *slog.Logger
}

// Stats counts what the controller saw.
type Stats struct {
	Requests      int64
	Invocations   int64 // accepted
	Throttled     int64 // 429 answers
	Unauthorized  int64 // 401 answers
	NotFound      int64 // 404 answers
	ActionPuts    int64
	ColdStarts    int64 // containers started
	Activations   int64 // finished
	Failed        int64 // finished with success=false
	MaxInFlightAt int64 // highest in-flight count seen
}

// Controller is a running fake controller.
type Controller struct {
	cfg Config
	srv *http.Server
	ln  net.Listener
	log *slog.Logger

	mu          sync.Mutex
	key         string
	actions     map[string]*action // by name
	activations map[string]*record
	throttleN   int
	inFlight    int64
	closed      bool
	wg          sync.WaitGroup

	st struct {
		requests, invocations, throttled, unauthorized, notFound, puts, cold, done, failed, maxInFlight atomic.Int64
	}
}

type action struct {
	name    string
	kind    string
	code    string // native kinds: the action's code, as PUT
	binary  bool
	main    string
	version int
	body    map[string]any // as PUT, with namespace/name/version set
	params  map[string]any // non-init parameters
	env     map[string]any // init parameters
	timeout time.Duration
	apiKey  bool // provide-api-key annotation

	slots chan struct{}   // container capacity
	idle  chan *container // warm containers
	mu    sync.Mutex
	all   []*container
}

type container struct {
	cmd   *exec.Cmd        // blackbox
	proxy *proxytest.Proxy // native: the stand-in actionloop proxy
	srv   *http.Server     // native: serving proxy
	files []*os.File       // native: the proxy's stdout and stderr pipes
	dir   string           // native: the proxy's action directory
	base  string
	once  sync.Once
}

type record struct {
	done chan struct{}
	rec  map[string]any
}

// Start runs a controller on 127.0.0.1 until Close.
func Start(cfg Config) (*Controller, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "guest"
	}
	if cfg.MaxContainers == 0 {
		cfg.MaxContainers = 4
	}
	if cfg.BlockingTimeout == 0 {
		cfg.BlockingTimeout = 60 * time.Second
	}
	if cfg.ContainerOutput == nil {
		cfg.ContainerOutput = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if u, k, ok := strings.Cut(cfg.APIKey, ":"); !ok || u == "" || k == "" {
		return nil, errors.New(`owtest: Config.APIKey is not "uuid:key"`)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("owtest: listen: %w", err)
	}
	c := &Controller{cfg: cfg, ln: ln, log: cfg.Logger, key: cfg.APIKey,
		actions: map[string]*action{}, activations: map[string]*record{}}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// URL is the controller's API host (http://127.0.0.1:port).
func (c *Controller) URL() string { return "http://" + c.ln.Addr().String() }

// Namespace is the key's namespace.
func (c *Controller) Namespace() string { return c.cfg.Namespace }

// RotateKey makes key the only accepted API key; requests with the old
// one get 401.
func (c *Controller) RotateKey(key string) {
	c.mu.Lock()
	c.key = key
	c.mu.Unlock()
}

// Throttle makes the next n invocation requests get 429.
func (c *Controller) Throttle(n int) {
	c.mu.Lock()
	c.throttleN += n
	c.mu.Unlock()
}

// DeleteAction removes an action as if a user had deleted it.
func (c *Controller) DeleteAction(name string) {
	c.mu.Lock()
	a := c.actions[name]
	delete(c.actions, name)
	c.mu.Unlock()
	if a != nil {
		a.stop()
	}
}

// Stats returns the counters so far.
func (c *Controller) Stats() Stats {
	return Stats{Requests: c.st.requests.Load(), Invocations: c.st.invocations.Load(), Throttled: c.st.throttled.Load(),
		Unauthorized: c.st.unauthorized.Load(), NotFound: c.st.notFound.Load(), ActionPuts: c.st.puts.Load(),
		ColdStarts: c.st.cold.Load(), Activations: c.st.done.Load(), Failed: c.st.failed.Load(),
		MaxInFlightAt: c.st.maxInFlight.Load()}
}

// Records returns the finished activation records.
func (c *Controller) Records() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, r := range c.activations {
		select {
		case <-r.done:
			out = append(out, r.rec)
		default:
		}
	}
	return out
}

// Wait blocks until no activation is in flight or ctx is done.
func (c *Controller) Wait(ctx context.Context) error {
	for {
		c.mu.Lock()
		n := c.inFlight
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("owtest: %d activations still in flight: %w", n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops the server, waits for running activations and kills every
// container.
func (c *Controller) Close() error {
	c.mu.Lock()
	c.closed = true
	acts := c.actions
	c.actions = map[string]*action{}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	c.wg.Wait()
	for _, a := range acts {
		a.stop()
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (c *Controller) fail(w http.ResponseWriter, code int, msg string) {
	switch code {
	case http.StatusTooManyRequests:
		c.st.throttled.Add(1)
		if c.cfg.RetryAfter != "" {
			w.Header().Set("Retry-After", c.cfg.RetryAfter)
		}
	case http.StatusUnauthorized:
		c.st.unauthorized.Add(1)
	case http.StatusNotFound:
		c.st.notFound.Add(1)
	}
	writeJSON(w, code, map[string]any{"error": msg, "code": newID()[:16]})
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Controller) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	c.mu.Lock()
	key := c.key
	c.mu.Unlock()
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && c.cfg.Token != "" {
		return subtle.ConstantTimeCompare([]byte(tok), []byte(c.cfg.Token)) == 1
	}
	b, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(b)
	return err == nil && subtle.ConstantTimeCompare(raw, []byte(key)) == 1
}

// serve routes /api/v1/namespaces/{ns}/{actions|activations}/...
func (c *Controller) serve(w http.ResponseWriter, r *http.Request) {
	c.st.requests.Add(1)
	if !c.authorized(r) {
		c.fail(w, http.StatusUnauthorized, "The supplied authentication is invalid")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v1/namespaces/")
	if !ok {
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	parts := strings.SplitN(rest, "/", 3)
	ns := parts[0]
	if ns != "_" && ns != c.cfg.Namespace {
		c.fail(w, http.StatusForbidden, "The supplied authentication is not authorized to access this resource.")
		return
	}
	if len(parts) < 2 {
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	name := ""
	if len(parts) == 3 {
		n, err := unescape(parts[2])
		if err != nil {
			c.fail(w, http.StatusBadRequest, "bad entity name: "+err.Error())
			return
		}
		name = n
	}
	switch {
	case parts[1] == "actions" && name == "" && r.Method == http.MethodGet:
		c.listActions(w)
	case parts[1] == "actions" && name != "" && r.Method == http.MethodPut:
		c.putAction(w, r, name)
	case parts[1] == "actions" && name != "" && r.Method == http.MethodGet:
		c.getAction(w, name)
	case parts[1] == "actions" && name != "" && r.Method == http.MethodDelete:
		c.deleteAction(w, name)
	case parts[1] == "actions" && name != "" && r.Method == http.MethodPost:
		c.invoke(w, r, name)
	case parts[1] == "activations" && name != "" && r.Method == http.MethodGet:
		c.getActivation(w, name)
	default:
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
	}
}

func unescape(s string) (string, error) {
	segs := strings.Split(s, "/")
	if len(segs) > 2 {
		return "", errors.New("more than package/name")
	}
	for i, p := range segs {
		u, err := url.PathUnescape(p)
		if err != nil || u == "" {
			return "", fmt.Errorf("segment %q", p)
		}
		segs[i] = u
	}
	return strings.Join(segs, "/"), nil
}

func (c *Controller) listActions(w http.ResponseWriter) {
	c.mu.Lock()
	out := []map[string]any{}
	for _, a := range c.actions {
		out = append(out, map[string]any{"namespace": c.cfg.Namespace, "name": a.name, "version": a.body["version"]})
	}
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

type kv struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
	Init  bool   `json:"init"`
}

func (c *Controller) putAction(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Exec struct {
			Kind   string `json:"kind"`
			Image  string `json:"image"`
			Code   string `json:"code"`
			Binary bool   `json:"binary"`
			Main   string `json:"main"`
		} `json:"exec"`
		Limits struct {
			Timeout int64 `json:"timeout"`
			Memory  int   `json:"memory"`
		} `json:"limits"`
		Parameters  []kv `json:"parameters"`
		Annotations []kv `json:"annotations"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 50<<20))
	if err != nil || json.Unmarshal(raw, &body) != nil {
		c.fail(w, http.StatusBadRequest, "The request content was malformed.")
		return
	}
	if body.Exec.Kind == "" || (body.Exec.Kind == "blackbox" && body.Exec.Image == "") {
		c.fail(w, http.StatusBadRequest, "exec malformed: kind is required, and image for blackbox")
		return
	}
	if body.Limits.Timeout == 0 {
		body.Limits.Timeout = 60000
	}
	if body.Limits.Memory == 0 {
		body.Limits.Memory = 256
	}
	if body.Limits.Timeout < 100 || body.Limits.Memory < 128 {
		c.fail(w, http.StatusBadRequest, "limits out of range")
		return
	}
	if body.Exec.Kind != "blackbox" && (body.Exec.Code == "" || execEnvForKind(body.Exec.Kind) == "") {
		c.fail(w, http.StatusBadRequest, "exec malformed: the fake controller runs blackbox actions, and go:1.N actions with code")
		return
	}
	a := &action{name: name, kind: body.Exec.Kind, code: body.Exec.Code, binary: body.Exec.Binary, main: body.Exec.Main,
		params: map[string]any{}, env: map[string]any{},
		timeout: time.Duration(body.Limits.Timeout) * time.Millisecond,
		slots:   make(chan struct{}, c.cfg.MaxContainers), idle: make(chan *container, c.cfg.MaxContainers)}
	for _, p := range body.Parameters {
		if p.Init {
			a.env[p.Key] = p.Value
		} else {
			a.params[p.Key] = p.Value
		}
	}
	for _, an := range body.Annotations {
		if an.Key == "provide-api-key" && an.Value == true {
			a.apiKey = true
		}
	}
	c.mu.Lock()
	old := c.actions[name]
	if old != nil && r.URL.Query().Get("overwrite") != "true" {
		c.mu.Unlock()
		c.fail(w, http.StatusConflict, "resource already exists")
		return
	}
	if old != nil {
		a.version = old.version + 1
	}
	var rec map[string]any
	_ = json.Unmarshal(raw, &rec)
	rec["namespace"], rec["name"], rec["version"] = c.cfg.Namespace, name, fmt.Sprintf("0.0.%d", a.version)
	delete(rec, "parameters") // never echo parameters (they may hold secrets)
	a.body = rec
	c.actions[name] = a
	c.mu.Unlock()
	c.st.puts.Add(1)
	if old != nil {
		old.stop()
	}
	writeJSON(w, http.StatusOK, rec)
}

func (c *Controller) getAction(w http.ResponseWriter, name string) {
	c.mu.Lock()
	a := c.actions[name]
	c.mu.Unlock()
	if a == nil {
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	writeJSON(w, http.StatusOK, a.body)
}

func (c *Controller) deleteAction(w http.ResponseWriter, name string) {
	c.mu.Lock()
	a := c.actions[name]
	delete(c.actions, name)
	c.mu.Unlock()
	if a == nil {
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	a.stop()
	writeJSON(w, http.StatusOK, a.body)
}

func (c *Controller) invoke(w http.ResponseWriter, r *http.Request, name string) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 50<<20))
	params := map[string]any{}
	if err == nil && len(bytes.TrimSpace(raw)) > 0 {
		err = json.Unmarshal(raw, &params)
	}
	if err != nil {
		c.fail(w, http.StatusBadRequest, "The request content was malformed: the body must be a JSON object.")
		return
	}
	c.mu.Lock()
	a := c.actions[name]
	switch {
	case c.closed:
		c.mu.Unlock()
		c.fail(w, http.StatusServiceUnavailable, "controller shutting down")
		return
	case a == nil:
		c.mu.Unlock()
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	case c.throttleN > 0:
		c.throttleN--
		c.mu.Unlock()
		c.fail(w, http.StatusTooManyRequests, "Too many requests in the last minute (throttled on demand).")
		return
	case c.cfg.MaxInFlight > 0 && c.inFlight >= int64(c.cfg.MaxInFlight):
		n := c.inFlight
		c.mu.Unlock()
		c.fail(w, http.StatusTooManyRequests, fmt.Sprintf("Too many concurrent requests in flight (count: %d, allowed: %d).", n, c.cfg.MaxInFlight))
		return
	}
	c.inFlight++
	if c.inFlight > c.st.maxInFlight.Load() {
		c.st.maxInFlight.Store(c.inFlight)
	}
	id := newID()
	rec := &record{done: make(chan struct{})}
	c.activations[id] = rec
	apiKey := ""
	if a.apiKey {
		apiKey = c.key
	}
	c.wg.Add(1)
	c.mu.Unlock()
	c.st.invocations.Add(1)

	merged := map[string]any{}
	for k, v := range a.params {
		merged[k] = v
	}
	for k, v := range params {
		merged[k] = v
	}
	go func() {
		defer c.wg.Done()
		res := c.activate(a, id, merged, apiKey)
		c.mu.Lock()
		rec.rec = res
		c.inFlight--
		c.mu.Unlock()
		c.st.done.Add(1)
		if resp := res["response"].(map[string]any); resp["success"] != true {
			c.st.failed.Add(1)
		}
		close(rec.done)
	}()

	if r.URL.Query().Get("blocking") != "true" {
		writeJSON(w, http.StatusAccepted, map[string]any{"activationId": id})
		return
	}
	select {
	case <-rec.done:
		code := http.StatusOK
		if resp := rec.rec["response"].(map[string]any); resp["success"] != true {
			code = http.StatusBadGateway
		}
		if r.URL.Query().Get("result") == "true" {
			writeJSON(w, code, rec.rec["response"].(map[string]any)["result"])
			return
		}
		writeJSON(w, code, rec.rec)
	case <-time.After(c.cfg.BlockingTimeout):
		writeJSON(w, http.StatusAccepted, map[string]any{"activationId": id})
	case <-r.Context().Done():
	}
}

func (c *Controller) getActivation(w http.ResponseWriter, id string) {
	c.mu.Lock()
	rec := c.activations[id]
	c.mu.Unlock()
	if rec == nil {
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
		return
	}
	select {
	case <-rec.done:
		writeJSON(w, http.StatusOK, rec.rec)
	default:
		// OpenWhisk stores the record only when the activation ends.
		c.fail(w, http.StatusNotFound, "The requested resource does not exist.")
	}
}

// activate runs one activation in a container of a and returns its
// record.
func (c *Controller) activate(a *action, id string, params map[string]any, apiKey string) map[string]any {
	start := time.Now()
	status, statusCode, result := "success", 0, map[string]any{}
	finish := func() map[string]any {
		end := time.Now()
		return map[string]any{
			"activationId": id, "namespace": c.cfg.Namespace, "name": a.name, "version": a.body["version"],
			"subject": c.cfg.Namespace, "start": start.UnixMilli(), "end": end.UnixMilli(),
			"duration": end.Sub(start).Milliseconds(), "statusCode": statusCode, "logs": []string{},
			"response":    map[string]any{"status": status, "statusCode": statusCode, "success": statusCode == 0, "result": result},
			"annotations": []any{map[string]any{"key": "path", "value": c.cfg.Namespace + "/" + a.name}},
		}
	}
	ct, err := c.acquire(a)
	if err != nil {
		status, statusCode, result = "whisk internal error", 3, map[string]any{"error": err.Error()}
		return finish()
	}
	deadline := time.Now().Add(a.timeout)
	body, _ := json.Marshal(map[string]any{
		"value": params, "namespace": c.cfg.Namespace, "action_name": "/" + c.cfg.Namespace + "/" + a.name,
		"activation_id": id, "transaction_id": newID(), "deadline": strconv.FormatInt(deadline.UnixMilli(), 10),
		"api_key": apiKey,
	})
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	code, resp, err := post(ctx, ct.base+"/run", body)
	healthy := true
	var obj map[string]any
	switch {
	case err != nil && ctx.Err() != nil:
		status, statusCode = "action developer error", 2
		result = map[string]any{"error": fmt.Sprintf("The action exceeded its time limits of %d milliseconds.", a.timeout.Milliseconds())}
		healthy = false
	case err != nil:
		status, statusCode = "action developer error", 2
		result = map[string]any{"error": "The action did not produce a valid response and exited unexpectedly."}
		healthy = false
	case json.Unmarshal(resp, &obj) != nil || obj == nil:
		status, statusCode = "action developer error", 2
		result = map[string]any{"error": "The action did not produce a valid JSON response: " + strings.TrimSpace(string(resp))}
		healthy = false
	case code == http.StatusOK:
		result = obj
	default:
		if _, ok := obj["error"]; ok {
			status, statusCode = "application error", 1
		} else {
			status, statusCode = "action developer error", 2
		}
		result = obj
	}
	c.release(a, ct, healthy)
	return finish()
}

// acquire returns a warm container of a or starts one (cold start) and
// initialises it.
func (c *Controller) acquire(a *action) (*container, error) {
	select {
	case ct := <-a.idle:
		return ct, nil
	default:
	}
	select {
	case ct := <-a.idle:
		return ct, nil
	case a.slots <- struct{}{}:
	}
	ct, err := c.startContainer(a)
	if err != nil {
		<-a.slots
		return nil, err
	}
	return ct, nil
}

func (c *Controller) release(a *action, ct *container, healthy bool) {
	if !healthy {
		ct.kill()
		<-a.slots
		return
	}
	a.idle <- ct
}

func (c *Controller) startContainer(a *action) (*container, error) {
	c.st.cold.Add(1)
	var ct *container
	var err error
	if a.kind == "blackbox" {
		ct, err = c.startBlackbox()
	} else {
		ct, err = c.startNative(a)
	}
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.all = append(a.all, ct)
	a.mu.Unlock()
	// Wait for the proxy to listen, then /init.
	env := map[string]any{"__OW_API_HOST": c.URL(), "__OW_NAMESPACE": c.cfg.Namespace, "__OW_ACTION_NAME": "/" + c.cfg.Namespace + "/" + a.name}
	for k, v := range a.env {
		env[k] = v
	}
	main := a.main
	if main == "" {
		main = "main"
	}
	body, _ := json.Marshal(map[string]any{"value": map[string]any{
		"name": a.name, "main": main, "code": a.code, "binary": a.binary, "env": env,
	}})
	// A native action's /init unzips its code (tens of MB, slow under
	// the race detector): give it a minute.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		code, resp, err := post(ctx, ct.base+"/init", body)
		if err == nil && code == http.StatusOK {
			return ct, nil
		}
		if err == nil {
			ct.kill()
			return nil, fmt.Errorf("owtest: /init answered %d: %s", code, resp)
		}
		if ctx.Err() != nil {
			ct.kill()
			return nil, fmt.Errorf("owtest: container never answered /init: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startBlackbox starts Config.Command as a docker action's container.
func (c *Controller) startBlackbox() (*container, error) {
	if len(c.cfg.Command) == 0 {
		return nil, errors.New("owtest: a blackbox action, and Config.Command is empty")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("owtest: pick a port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(c.cfg.Command[0], c.cfg.Command[1:]...)
	cmd.Env = append(append(os.Environ(), c.cfg.Env...), "__OW_ACTION_PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = c.cfg.ContainerOutput, c.cfg.ContainerOutput
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("owtest: start container %s: %w", c.cfg.Command[0], err)
	}
	return &container{cmd: cmd, base: "http://127.0.0.1:" + strconv.Itoa(port)}, nil
}

// execEnvForKind is the OW_EXECUTION_ENV of the action-golang image of a
// go:1.N kind ("" for other kinds).
func execEnvForKind(kind string) string {
	v, ok := strings.CutPrefix(kind, "go:")
	if !ok || v == "" {
		return ""
	}
	return "openwhisk/action-golang-v" + v
}

// startNative starts a native action's container: the stand-in
// actionloop proxy with the settings of the action-golang image, its
// stdout and stderr piped to ContainerOutput.
func (c *Controller) startNative(a *action) (*container, error) {
	dir, err := os.MkdirTemp("", "owtest-action-")
	if err != nil {
		return nil, fmt.Errorf("owtest: container directory: %w", err)
	}
	ct := &container{dir: dir}
	var outs [2]*os.File
	for i := range outs {
		r, w, err := os.Pipe()
		if err != nil {
			ct.kill()
			return nil, fmt.Errorf("owtest: container output: %w", err)
		}
		ct.files = append(ct.files, r, w)
		outs[i] = w
		go func() { _, _ = io.Copy(c.cfg.ContainerOutput, r) }()
	}
	ct.proxy = proxytest.New(proxytest.Config{Dir: filepath.Join(dir, "action"), WaitForAck: "1",
		ExecutionEnv: execEnvForKind(a.kind), LogInitError: true, Environ: c.cfg.Env, Stdout: outs[0], Stderr: outs[1]})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ct.kill()
		return nil, fmt.Errorf("owtest: container listener: %w", err)
	}
	ct.srv = &http.Server{Handler: ct.proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ct.srv.Serve(ln) }()
	ct.base = "http://" + ln.Addr().String()
	return ct, nil
}

func (a *action) stop() {
	a.mu.Lock()
	all := a.all
	a.all = nil
	a.mu.Unlock()
	for _, ct := range all {
		ct.kill()
	}
}

func (ct *container) kill() {
	ct.once.Do(func() {
		if ct.cmd != nil {
			_ = ct.cmd.Process.Kill()
			_ = ct.cmd.Wait()
		}
		if ct.srv != nil {
			_ = ct.srv.Close()
		}
		if ct.proxy != nil {
			// Kill the exec first (a /run in progress fails at once), then
			// wait for the request in progress before closing its files.
			ct.proxy.Stop()
			ct.proxy.Close()
		}
		for _, f := range ct.files {
			_ = f.Close()
		}
		if ct.dir != "" {
			_ = os.RemoveAll(ct.dir)
		}
	})
}

var proxyClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func post(ctx context.Context, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := proxyClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}
