package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// progress prints job progress on stderr: at most one line every few
// seconds, plus the final one.
type progress struct {
	w     io.Writer
	last  time.Time
	start time.Time
	every time.Duration
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, start: time.Now(), every: 5 * time.Second}
}

func (p *progress) Update(st wire.JobStatus) {
	if time.Since(p.last) < p.every || st.State.Terminal() {
		return
	}
	if p.last.IsZero() {
		p.last = time.Now()
		return
	}
	p.last = time.Now()
	p.line(st)
}

func (p *progress) Done(st wire.JobStatus) {
	if time.Since(p.start) > p.every {
		p.line(st)
	}
}

func (p *progress) line(st wire.JobStatus) {
	fmt.Fprintf(p.w, "skein: job %s %s: %d/%d done, %d running, %d failed, %d retried\n",
		st.ID, st.State, st.Done, st.Total, st.Running, st.Failed, st.Retried)
}
