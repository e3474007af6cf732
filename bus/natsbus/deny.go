package natsbus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/skeinrun/skein/bus"
)

// ErrDenied reports a publish or subscription the server refused to this
// connection's credentials (a role without the right, or another
// namespace). It comes wrapped with bus.ErrUnreachable: the bus cannot be
// used as asked.
var ErrDenied = errors.New("permission denied by the NATS server")

// denials lets a call that waits for a reply stop at once when the
// server refuses its request subject: a refused publish is dropped by the
// server, which reports it asynchronously, and the reply would never come.
type denials struct {
	mu      sync.Mutex
	waiters map[*denyWaiter]struct{}
}

type denyWaiter struct {
	prefixes []string
	cancel   context.CancelCauseFunc
}

var deniedSubject = regexp.MustCompile(`(?i)(publish|subscription) to "(\S+)"`)

// report is called with every asynchronous error of the connection.
func (d *denials) report(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	m := deniedSubject.FindStringSubmatch(err.Error())
	if m == nil {
		return
	}
	subj := m[2]
	d.mu.Lock()
	defer d.mu.Unlock()
	for w := range d.waiters {
		for _, p := range w.prefixes {
			if subj == p || strings.HasSuffix(p, ".") && strings.HasPrefix(subj, p) {
				w.cancel(fmt.Errorf("%w: %w: %s to %q (this credential's role or namespace does not allow it)", bus.ErrUnreachable, ErrDenied, strings.ToLower(m[1]), subj))
				break
			}
		}
	}
}

// watch returns a context cancelled, with the denial as its cause, when
// the server refuses a subject equal to one of subjects (or starting with
// one that ends in "."). stop must be called.
func (d *denials) watch(ctx context.Context, subjects ...string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &denyWaiter{prefixes: subjects, cancel: cancel}
	d.mu.Lock()
	if d.waiters == nil {
		d.waiters = map[*denyWaiter]struct{}{}
	}
	d.waiters[w] = struct{}{}
	d.mu.Unlock()
	return ctx, func() {
		d.mu.Lock()
		delete(d.waiters, w)
		d.mu.Unlock()
		cancel(nil)
	}
}

// deniedErr returns the denial that cancelled ctx, or err.
func deniedErr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && errors.Is(c, ErrDenied) {
		return c
	}
	return err
}
