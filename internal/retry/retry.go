// Package retry is Skein's one retry loop: exponential backoff with
// jitter, bounded by a context and a number of tries, on top of
// cenkalti/backoff. Every place that retries a bus or storage call uses
// it, so that backoff, give-up and logging behave the same everywhere.
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy says how often and how fast to retry.
type Policy struct {
	// Initial is the first wait; it doubles (with ±50% jitter) up to Max.
	// Default 100ms.
	Initial time.Duration
	// Max bounds one wait. Default 5s.
	Max time.Duration
	// Tries bounds the calls of op (the first call included); 0 means no
	// bound: retry until ctx ends or op returns a permanent error.
	Tries int
	// OnRetry, when set, is called before each wait with the failed
	// attempt's number (1 for the first call) and error.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Permanent wraps err so that Do returns it at once, unwrapped.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return backoff.Permanent(err)
}

// Do calls op until it returns nil or a permanent error, the tries are
// used up, or ctx ends. It returns op's last error (unwrapped from
// Permanent), or ctx's error when ctx ended before op ever succeeded and
// op had no error of its own yet.
func Do(ctx context.Context, p Policy, op func() error) error {
	_, err := Value(ctx, p, func() (struct{}, error) { return struct{}{}, op() })
	return err
}

// Value is Do for an operation that returns a value.
func Value[T any](ctx context.Context, p Policy, op func() (T, error)) (T, error) {
	if p.Initial <= 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 5 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = p.Initial
	b.MaxInterval = p.Max
	b.RandomizationFactor = 0.5
	b.Multiplier = 2
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0)}
	if p.Tries > 0 {
		opts = append(opts, backoff.WithMaxTries(uint(p.Tries)))
	}
	attempt := 0
	if p.OnRetry != nil {
		opts = append(opts, backoff.WithNotify(func(err error, wait time.Duration) {
			p.OnRetry(attempt, err, wait)
		}))
	}
	var last error
	v, err := backoff.Retry(ctx, func() (T, error) {
		attempt++
		v, err := op()
		if err != nil {
			last = err
		}
		return v, err
	}, opts...)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) && last != nil {
		// Prefer the operation's own error to a bare "context canceled"
		// when the caller gave up while op was failing.
		return v, errors.Join(err, last)
	}
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return v, perm.Unwrap()
	}
	return v, err
}
