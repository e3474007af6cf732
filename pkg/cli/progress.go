package cli

import (
	"fmt"
	"io"

	"github.com/skeinrun/skein/pkg/progress"
	"github.com/skeinrun/skein/pkg/wire"
)

// progressModes are the values of --progress.
var progressModes = map[string]progress.Mode{"auto": progress.Auto, "bar": progress.Bar, "lines": progress.Lines}

// reporter shows job progress on stderr through pkg/progress: a bar
// redrawn in place on a terminal, bounded plain lines elsewhere (one per
// interval, plus state changes, the first failure and the final line).
// A nil reporter (--progress none) shows nothing.
type reporter struct{ r *progress.Reporter }

// newProgress returns the reporter for mode ("" is auto, "none" is off).
func newProgress(w io.Writer, mode string) (*reporter, error) {
	if mode == "none" {
		return &reporter{}, nil
	}
	cfg := progress.DefaultConfig()
	if mode != "" {
		m, ok := progressModes[mode]
		if !ok {
			return nil, usagef("--progress %q: want auto, bar, lines or none", mode)
		}
		cfg.Mode = m
	}
	r, err := progress.New(w, cfg)
	if err != nil {
		return nil, fmt.Errorf("progress: %w", err)
	}
	return &reporter{r}, nil
}

// Update shows a snapshot; a final one is left to Done, so that it is
// drawn once.
func (p *reporter) Update(st wire.JobStatus) {
	if p.r != nil && !st.State.Terminal() {
		p.r.Update(st)
	}
}

func (p *reporter) Done(st wire.JobStatus) {
	if p.r != nil && st.ID != "" {
		p.r.Finish(st)
	}
}
