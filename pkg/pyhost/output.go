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

// output copies the interpreter's stdout and stderr (one pipe) to the
// current call's log, strips the sync marks and signals each one, and
// keeps the last bytes for diagnosing a crashed interpreter.
type output struct {
	mu   sync.Mutex
	sink io.Writer
	tail []byte

	synced chan struct{} // one value per sync mark
	done   chan struct{} // closed at EOF of the pipe
}

func newOutput(idle io.Writer) *output {
	return &output{sink: idle, synced: make(chan struct{}, 16), done: make(chan struct{})}
}

// setSink switches where output goes and resets the tail.
func (o *output) setSink(w io.Writer) {
	o.mu.Lock()
	o.sink = w
	o.tail = o.tail[:0]
	o.mu.Unlock()
}

// Tail returns the last bytes written since the last setSink.
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
	_, _ = o.sink.Write(p)
	o.tail = append(o.tail, p...)
	if n := len(o.tail); n > tailSize {
		o.tail = append(o.tail[:0], o.tail[n-tailSize:]...)
	}
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
				select {
				case o.synced <- struct{}{}:
				default:
				}
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

// drain discards pending sync signals.
func (o *output) drain() {
	for {
		select {
		case <-o.synced:
		default:
			return
		}
	}
}
