package storage

import (
	"fmt"
	"log/slog"
	"sync"
)

// Resolver maps a URL's scheme to its Store: local (the configured root
// for local://bucket/key, the file system root for local:///abs/path),
// cos and s3 (the COS store, created on first use), http and https (the
// read-only range-request store). It is safe for concurrent use.
type Resolver struct {
	cfg   Config
	log   *slog.Logger
	local *Local // LocalRoot
	abs   *Local // "/"

	mu    sync.Mutex
	cos   map[string]*COS
	https map[string]*HTTP
}

// NewResolver validates cfg and returns a resolver. log may be nil.
func NewResolver(cfg Config, log *slog.Logger) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	local, err := NewLocal(cfg.LocalRoot, log)
	if err != nil {
		return nil, err
	}
	abs, _ := NewLocal("/", log)
	return &Resolver{cfg: cfg, log: log, local: local, abs: abs, cos: map[string]*COS{}, https: map[string]*HTTP{}}, nil
}

// Config returns the resolver's configuration.
func (r *Resolver) Config() Config { return r.cfg }

// Store returns the store that serves u. The bucket and key to pass to it
// are u.Bucket and u.Key.
func (r *Resolver) Store(u URL) (Store, error) {
	switch u.Scheme {
	case SchemeLocal:
		if u.Bucket == "" {
			return r.abs, nil
		}
		return r.local, nil
	case SchemeCOS, SchemeS3:
		r.mu.Lock()
		defer r.mu.Unlock()
		if c := r.cos[u.Scheme]; c != nil {
			return c, nil
		}
		c, err := NewCOS(r.cfg.COS, u.Scheme, r.log)
		if err != nil {
			return nil, &Error{Op: "resolve", URL: u.String(), Err: err}
		}
		r.cos[u.Scheme] = c
		return c, nil
	case SchemeHTTP, SchemeHTTPS:
		r.mu.Lock()
		defer r.mu.Unlock()
		if h := r.https[u.Scheme]; h != nil {
			return h, nil
		}
		h := NewHTTP(u.Scheme, r.cfg.HTTPTimeout, r.log)
		r.https[u.Scheme] = h
		return h, nil
	}
	return nil, &Error{Op: "resolve", URL: u.String(), Err: fmt.Errorf("%w: unknown scheme %q", ErrBadURL, u.Scheme)}
}

// Parse parses raw and returns its store.
func (r *Resolver) Parse(raw string) (URL, Store, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return URL{}, nil, err
	}
	s, err := r.Store(u)
	return u, s, err
}
