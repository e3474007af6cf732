package openwhisk

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// APIError is a controller's answer other than success.
type APIError struct {
	Method, Path string // request line; the path never holds credentials
	Status       int
	Message      string // the controller's "error" field
	Code         string // the controller's "code" (transaction id)
}

func (e *APIError) Error() string {
	return fmt.Sprintf("openwhisk: %s %s: %d %s: %s (code %s)", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message, e.Code)
}

// Is lets errors.Is match the sentinel errors by status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

var (
	ErrNotFound     = errors.New("openwhisk: not found")
	ErrUnauthorized = errors.New("openwhisk: unauthorized")
	ErrThrottled    = errors.New("openwhisk: throttled (429) past the retry limit")
)

// Stats counts what the client met; read with Client.Stats.
type Stats struct {
	Requests    int64 // HTTP requests sent
	Invocations int64 // invocations accepted (activation id received)
	Throttled   int64 // 429 answers
	Reauths     int64 // 401 answers followed by a credentials refresh
	Redeploys   int64 // action re-created after a 404 on invoke
	Retries     int64 // requests retried (429, 5xx, network)
}

// Client speaks the controller's REST API (/api/v1). It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger
	lim  *limiter

	credMu  sync.Mutex
	creds   Credentials
	credGen uint64

	requests, invocations, throttled, reauths, redeploys, retries atomic.Int64
}

// NewClient checks cfg and fetches the credentials once.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger, lim: newLimiter(cfg.RateLimit)}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.PoolThreads
		c.http = &http.Client{Timeout: 60 * time.Second, Transport: tr}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	creds, err := cfg.Credentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("openwhisk: get credentials: %w", err)
	}
	if err := creds.validate(); err != nil {
		return nil, fmt.Errorf("openwhisk: credentials: %w", err)
	}
	c.creds = creds
	return c, nil
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Invocations: c.invocations.Load(), Throttled: c.throttled.Load(),
		Reauths: c.reauths.Load(), Redeploys: c.redeploys.Load(), Retries: c.retries.Load()}
}

// ActionSpec is the body of PUT …/actions/{name}.
type ActionSpec struct {
	Namespace   string     `json:"namespace,omitempty"`
	Name        string     `json:"name,omitempty"`
	Exec        Exec       `json:"exec"`
	Limits      Limits     `json:"limits"`
	Parameters  []KeyValue `json:"parameters,omitempty"`
	Annotations []KeyValue `json:"annotations,omitempty"`
	Version     string     `json:"version,omitempty"`
	Publish     bool       `json:"publish"`
}

// Exec is an action's code: a kind with code, or a docker image.
type Exec struct {
	Kind   string `json:"kind"`
	Image  string `json:"image,omitempty"`
	Code   string `json:"code,omitempty"`
	Main   string `json:"main,omitempty"`
	Binary bool   `json:"binary,omitempty"`
}

// Limits are an action's limits.
type Limits struct {
	Timeout     int64 `json:"timeout"` // ms
	Memory      int   `json:"memory"`  // MiB
	Logs        int   `json:"logs,omitempty"`
	Concurrency int   `json:"concurrency,omitempty"`
}

// KeyValue is a parameter or annotation; Init marks a parameter passed to
// /init as an environment variable.
type KeyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
	Init  bool   `json:"init,omitempty"`
}

// Activation is an activation record (GET …/activations/{id}, or the body
// of a blocking invocation).
type Activation struct {
	ActivationID string `json:"activationId"`
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	Start        int64  `json:"start"`
	End          int64  `json:"end"`
	Duration     int64  `json:"duration"`
	StatusCode   int    `json:"statusCode"`
	Response     struct {
		// Status is "success", "application error", "action developer
		// error" or "whisk internal error".
		Status     string         `json:"status"`
		StatusCode int            `json:"statusCode"`
		Success    bool           `json:"success"`
		Result     map[string]any `json:"result"`
	} `json:"response"`
	Logs []string `json:"logs"`
}

func (c *Client) actionPath(name string) string {
	return "/api/v1/namespaces/" + url.PathEscape(c.cfg.Namespace) + "/actions/" + escapeName(name)
}

// escapeName escapes each segment of "package/name".
func escapeName(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// PutAction creates or replaces the action name.
func (c *Client) PutAction(ctx context.Context, name string, spec ActionSpec) error {
	body, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("openwhisk: encode action %s: %w", name, err)
	}
	_, _, err = c.do(ctx, http.MethodPut, c.actionPath(name), url.Values{"overwrite": {"true"}}, body)
	return err
}

// DeleteAction removes the action name.
func (c *Client) DeleteAction(ctx context.Context, name string) error {
	_, _, err := c.do(ctx, http.MethodDelete, c.actionPath(name), nil, nil)
	return err
}

// Invoke starts an activation of name with params without waiting for it
// and returns its activation id.
func (c *Client) Invoke(ctx context.Context, name string, params map[string]any) (string, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return "", fmt.Errorf("openwhisk: encode params for %s: %w", name, err)
	}
	c.lim.wait(ctx)
	_, resp, err := c.do(ctx, http.MethodPost, c.actionPath(name), url.Values{"blocking": {"false"}}, body)
	if err != nil {
		return "", err
	}
	var out struct {
		ActivationID string `json:"activationId"`
	}
	if err := json.Unmarshal(resp, &out); err != nil || out.ActivationID == "" {
		return "", fmt.Errorf("openwhisk: invoke %s: answer %.200q has no activationId", name, resp)
	}
	c.invocations.Add(1)
	return out.ActivationID, nil
}

// InvokeBlocking runs an activation of name and waits for its record (the
// controller waits at most 60s, then answers 202 with the activation id;
// the record is then read with GetActivation). A failed activation (502)
// is returned as a record whose Response.Success is false, not an error.
func (c *Client) InvokeBlocking(ctx context.Context, name string, params map[string]any) (*Activation, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("openwhisk: encode params for %s: %w", name, err)
	}
	c.lim.wait(ctx)
	_, resp, err := c.do(ctx, http.MethodPost, c.actionPath(name), url.Values{"blocking": {"true"}}, body)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadGateway {
		err = nil // application error: the body is the record
		resp = []byte(ae.Message)
	}
	if err != nil {
		return nil, err
	}
	var a Activation
	if err := json.Unmarshal(resp, &a); err != nil || a.ActivationID == "" {
		return nil, fmt.Errorf("openwhisk: invoke %s: answer %.200q is not an activation record", name, resp)
	}
	c.invocations.Add(1)
	if a.Response.Status == "" {
		// 202: still running; the record comes with GetActivation.
		return c.GetActivation(ctx, a.ActivationID)
	}
	return &a, nil
}

// GetActivation reads one activation record. It returns an error matching
// ErrNotFound while the activation is still running.
func (c *Client) GetActivation(ctx context.Context, id string) (*Activation, error) {
	_, resp, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(c.cfg.Namespace)+"/activations/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, err
	}
	var a Activation
	if err := json.Unmarshal(resp, &a); err != nil {
		return nil, fmt.Errorf("openwhisk: activation %s: record %.200q: %w", id, resp, err)
	}
	return &a, nil
}

// WaitActivation polls GetActivation every interval until the record
// exists or ctx is done.
func (c *Client) WaitActivation(ctx context.Context, id string, interval time.Duration) (*Activation, error) {
	for {
		a, err := c.GetActivation(ctx, id)
		if !errors.Is(err, ErrNotFound) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("openwhisk: wait for activation %s: %w", id, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func (c *Client) authHeader() (string, uint64) {
	c.credMu.Lock()
	defer c.credMu.Unlock()
	if c.creds.Token != "" {
		return "Bearer " + c.creds.Token, c.credGen
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.creds.APIKey)), c.credGen
}

// refresh re-reads the credentials after a 401 on a request made with
// generation gen; concurrent 401s of one generation refresh once.
func (c *Client) refresh(ctx context.Context, gen uint64) error {
	c.credMu.Lock()
	defer c.credMu.Unlock()
	if c.credGen != gen {
		return nil // someone refreshed already
	}
	creds, err := c.cfg.Credentials(ctx)
	if err != nil {
		return fmt.Errorf("openwhisk: refresh credentials after 401: %w", err)
	}
	if err := creds.validate(); err != nil {
		return fmt.Errorf("openwhisk: refreshed credentials: %w", err)
	}
	c.creds = creds
	c.credGen++
	c.reauths.Add(1)
	c.log.Info("openwhisk credentials refreshed after 401")
	return nil
}

// do sends one request, retrying 429 (after Retry-After or a jittered
// backoff, slowing the rate limiter), 5xx other than 502 and network
// errors up to MaxAttempts, and a 401 once after refreshing credentials.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte) (int, []byte, error) {
	u := strings.TrimRight(c.cfg.APIHost, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	reauthed := false
	var lastErr error
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			c.retries.Add(1)
		}
		auth, gen := c.authHeader()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return 0, nil, fmt.Errorf("openwhisk: %s %s: %w", method, path, err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		c.requests.Add(1)
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil, fmt.Errorf("openwhisk: %s %s: %w", method, path, ctx.Err())
			}
			lastErr = fmt.Errorf("openwhisk: %s %s: %w", method, path, err)
			if err := sleep(ctx, c.backoff(attempt)); err != nil {
				return 0, nil, lastErr
			}
			continue
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if rerr != nil {
			lastErr = fmt.Errorf("openwhisk: %s %s: reading answer: %w", method, path, rerr)
			if err := sleep(ctx, c.backoff(attempt)); err != nil {
				return 0, nil, lastErr
			}
			continue
		}
		st := resp.StatusCode
		switch {
		case st >= 200 && st < 300:
			c.lim.ok()
			return st, data, nil
		case st == http.StatusTooManyRequests:
			c.throttled.Add(1)
			c.lim.throttled()
			lastErr = apiError(method, path, st, data)
			d := retryAfter(resp.Header.Get("Retry-After"))
			if d == 0 {
				d = c.backoff(attempt)
			}
			c.log.Debug("openwhisk throttled", "path", path, "attempt", attempt, "wait", d)
			if err := sleep(ctx, d); err != nil {
				return 0, nil, fmt.Errorf("%w (waiting after 429: %v)", lastErr, err)
			}
			continue
		case st == http.StatusUnauthorized && !reauthed:
			reauthed = true
			lastErr = apiError(method, path, st, data)
			if err := c.refresh(ctx, gen); err != nil {
				return 0, nil, errors.Join(lastErr, err)
			}
			attempt-- // the retry after a refresh is not a failure attempt
			continue
		case st >= 500 && st != http.StatusBadGateway:
			lastErr = apiError(method, path, st, data)
			if err := sleep(ctx, c.backoff(attempt)); err != nil {
				return 0, nil, lastErr
			}
			continue
		default:
			if st == http.StatusBadGateway {
				// A blocking invocation's application error: keep the
				// record whole for InvokeBlocking.
				return st, data, &APIError{Method: method, Path: path, Status: st, Message: string(data)}
			}
			return st, data, apiError(method, path, st, data)
		}
	}
	if errors.Is(lastErr, ErrThrottled) {
		return 0, nil, fmt.Errorf("%w: %w", ErrThrottled, lastErr)
	}
	return 0, nil, fmt.Errorf("openwhisk: %s %s: gave up after %d attempts: %w", method, path, c.cfg.MaxAttempts, lastErr)
}

func apiError(method, path string, st int, data []byte) *APIError {
	var e struct {
		Error string `json:"error"`
		Code  any    `json:"code"`
	}
	_ = json.Unmarshal(data, &e)
	msg := e.Error
	if msg == "" {
		msg = strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200]
		}
	}
	code := ""
	if e.Code != nil {
		code = fmt.Sprint(e.Code)
	}
	return &APIError{Method: method, Path: path, Status: st, Message: msg, Code: code}
}

// backoff is a full-jitter exponential backoff for attempt n.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.RetryBase << min(n-1, 20)
	if d > c.cfg.RetryMax || d <= 0 {
		d = c.cfg.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads Retry-After in seconds or as an HTTP date (capped at a
// minute).
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseFloat(h, 64); err == nil && s >= 0 {
		d = time.Duration(s * float64(time.Second))
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	if d <= 0 {
		return 0
	}
	// jitter so that many waiting requests do not return at once
	d += rand.N(d/10 + time.Millisecond)
	return min(d, time.Minute)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// limiter is a token bucket whose rate adapts to 429s: unlimited (or the
// configured cap) until the first 429; then each 429 halves the rate
// (starting from the success rate seen lately), at most once per
// cutEvery so that a burst of 429s from one overload counts once, never
// below minRate; every success raises it by 5% + 1/s, back to unlimited
// (or the cap) when it passes the cap (or 10,000/s).
type limiter struct {
	mu      sync.Mutex
	max     float64 // configured cap; 0 = none
	rate    float64 // current; 0 = unlimited
	next    time.Time
	winFrom time.Time
	winOK   int
	lastOK  float64 // successes per second in the last full window
	cutAt   time.Time
}

const (
	minRate  = 20.0
	cutEvery = 250 * time.Millisecond
)

func newLimiter(max float64) *limiter {
	return &limiter{max: max, rate: max, winFrom: time.Now()}
}

func (l *limiter) wait(ctx context.Context) {
	l.mu.Lock()
	if l.rate <= 0 {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	t := l.next
	if t.Before(now) {
		t = now
	}
	l.next = t.Add(time.Duration(float64(time.Second) / l.rate))
	l.mu.Unlock()
	if d := time.Until(t); d > 0 {
		_ = sleep(ctx, d)
	}
}

func (l *limiter) ok() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.winOK++
	if el := now.Sub(l.winFrom); el >= time.Second {
		l.lastOK = float64(l.winOK) / el.Seconds()
		l.winFrom, l.winOK = now, 0
	}
	if l.rate > 0 {
		l.rate = l.rate*1.05 + 1
		ceiling := l.max
		if ceiling == 0 {
			ceiling = 10000
		}
		if l.rate >= ceiling {
			l.rate = l.max
		}
	}
}

func (l *limiter) throttled() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.cutAt) < cutEvery {
		return
	}
	l.cutAt = now
	r := l.rate
	if r == 0 {
		r = l.lastOK
		if el := now.Sub(l.winFrom).Seconds(); el > 0.05 && float64(l.winOK)/el > r {
			r = float64(l.winOK) / el
		}
	}
	l.rate = max(r/2, minRate)
}

// current returns the limiter's rate (0 = unlimited); for tests.
func (l *limiter) current() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}
