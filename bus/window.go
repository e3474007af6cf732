package bus

import "sync"

// Window is a prefetch bound that may change while a consumer runs (see
// QueueOptions.Window). Its methods are safe for concurrent use: the
// reader sets it, the bus reads it.
type Window struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

// NewWindow returns a window of n (at least 1).
func NewWindow(n int) *Window {
	return &Window{n: max(n, 1), changed: make(chan struct{})}
}

// Set changes the bound to n (at least 1).
func (w *Window) Set(n int) {
	n = max(n, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if n == w.n {
		return
	}
	w.n = n
	close(w.changed)
	w.changed = make(chan struct{})
}

// Size returns the bound and a channel closed by the next change.
func (w *Window) Size() (int, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.changed
}
