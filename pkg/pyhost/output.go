package pyhost

import (
	"bytes"
	"io"
	"sync"
)

// syncMark is what host.py writes to its stdout after each call, once the
// function's own output is flushed. It must match SYNC in host.py.
var syncMark = []byte("\x1eskein-pyhost-sync\x1e\n")

const tailSize = 8 << 10

// sink is one call's share of the interpreter's output: the bytes up to
// its sync mark.
type sink struct {
	w      io.Writer
	synced chan struct{} // closed at the call's sync mark
}

func newSink(w io.Writer) *sink {
	if w == nil {
		w = io.Discard
	}
	return &sink{w: w, synced: make(chan struct{})}
}

// output copies the interpreter's stdout and stderr (one pipe) to the
// logs of the calls sent to it, in order: each sync mark ends the first
// call's share and closes its synced channel. Output while no call is
// pending goes to idle. It keeps the last bytes since the last mark for
// diagnosing a crashed interpreter.
type output struct {
	mu    sync.Mutex
	idle  io.Writer
	sinks []*sink // the calls sent, in order, whose marks have not come
	tail  []byte

	done chan struct{} // closed at EOF of the pipe
}

func newOutput(idle io.Writer) *output {
	return &output{idle: idle, done: make(chan struct{})}
}

// push adds the share of the call sent next.
func (o *output) push(s *sink) {
	o.mu.Lock()
	o.sinks = append(o.sinks, s)
	o.mu.Unlock()
}

// Tail returns the last bytes written since the last sync mark.
func (o *output) Tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.tail)
}

func (o *output) emit(p []byte) {
	if len(p) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.idle
	if len(o.sinks) > 0 {
		w = o.sinks[0].w
	}
	_, _ = w.Write(p)
	o.tail = append(o.tail, p...)
	if n := len(o.tail); n > tailSize {
		o.tail = append(o.tail[:0], o.tail[n-tailSize:]...)
	}
}

// mark ends the first pending call's share.
func (o *output) mark() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tail = o.tail[:0]
	if len(o.sinks) == 0 {
		return
	}
	close(o.sinks[0].synced)
	o.sinks[0] = nil
	o.sinks = o.sinks[1:]
}

// run copies r until EOF.
func (o *output) run(r io.Reader) {
	defer close(o.done)
	buf := make([]byte, 32<<10)
	var pend []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			pend = append(pend, buf[:n]...)
			for {
				i := bytes.Index(pend, syncMark)
				if i < 0 {
					break
				}
				o.emit(pend[:i])
				pend = pend[i+len(syncMark):]
				o.mark()
			}
			// Hold back a suffix that may be the start of a mark.
			k := partialSuffix(pend, syncMark)
			o.emit(pend[:len(pend)-k])
			pend = append(pend[:0], pend[len(pend)-k:]...)
		}
		if err != nil {
			o.emit(pend)
			return
		}
	}
}

// partialSuffix returns the length of the longest suffix of b that is a
// proper prefix of mark.
func partialSuffix(b, mark []byte) int {
	max := len(mark) - 1
	if len(b) < max {
		max = len(b)
	}
	for k := max; k > 0; k-- {
		if bytes.Equal(b[len(b)-k:], mark[:k]) {
			return k
		}
	}
	return 0
}
