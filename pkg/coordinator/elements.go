package coordinator

import (
	"context"
	"fmt"

	"github.com/skeinrun/skein/pkg/wire"
)

// elements holds a map job's iterdata compactly: the JSON list as it came
// and where each element lies in it (8 bytes per element). A task's input
// is made from its element when the task is published (input), so that a
// job of a million elements costs its iterdata's bytes and 8 MB, not a
// million decoded inputs.
type elements struct {
	raw        []byte
	start, end []uint32
}

// newElements indexes the elements of list, a valid JSON list (checked
// before: the scan trusts the syntax).
func newElements(list []byte) (*elements, error) {
	if len(list) > MaxInputSize {
		return nil, fmt.Errorf("iterdata of %d bytes: at most %d", len(list), MaxInputSize)
	}
	e := &elements{raw: list}
	i := skipSpace(list, 0)
	if i >= len(list) || list[i] != '[' {
		return nil, fmt.Errorf("iterdata: must be a JSON list")
	}
	i = skipSpace(list, i+1)
	if i < len(list) && list[i] == ']' {
		return e, nil
	}
	for i < len(list) {
		j := skipValue(list, i)
		e.start = append(e.start, uint32(i))
		e.end = append(e.end, uint32(j))
		i = skipSpace(list, j)
		if i >= len(list) || list[i] == ']' {
			break
		}
		i = skipSpace(list, i+1) // the comma
	}
	e.start, e.end = shrink(e.start), shrink(e.end)
	return e, nil
}

// shrink drops the spare capacity append left (up to half of the slice).
func shrink(s []uint32) []uint32 {
	if cap(s)-len(s) < 1024 {
		return s
	}
	out := make([]uint32, len(s))
	copy(out, s)
	return out
}

func (e *elements) len() int { return len(e.start) }

// at returns element i's JSON text (a slice of the list, not a copy).
func (e *elements) at(i int) wire.Value {
	return wire.Value(e.raw[e.start[i]:e.end[i]:e.end[i]])
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at b[i]
// (valid JSON assumed).
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '[', '{':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != ']' && b[i] != '}' && !isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// makeInputs reads the job's data or iterdata (from the job log when the
// spec holds a reference) and prepares its task inputs: a call's input, or
// every input of iterdata expanded over storage (Hooks.Expand), or, for
// plain iterdata, only the index of its elements (input makes each task's
// input when the task is published). Every element is checked here, so a
// bad one refuses the job at submit.
func (j *job) makeInputs(ctx context.Context) error {
	spec, c := j.spec, j.c
	extra, err := ParseExtra(spec.ExtraParams)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	j.extra = extra
	data, iter, err := c.specInputs(ctx, spec)
	if err != nil {
		return fmt.Errorf("reading the job's input: %w", err)
	}
	switch spec.Kind {
	case wire.JobCall:
		in, err := SplitElement(data, extra)
		if err != nil {
			return fmt.Errorf("%w: data: %v", ErrInvalid, err)
		}
		j.inputs = []Input{in}
	default:
		if t := firstByte(iter); t != '[' {
			return fmt.Errorf("%w: iterdata: must be a JSON list, got %s", ErrInvalid, jsonKind(t))
		}
		elems, err := newElements(iter)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if h := c.cfg.Hooks.Expand; h != nil {
			vals := make([]wire.Value, elems.len())
			for i := range vals {
				vals[i] = elems.at(i)
			}
			ins, objs, err := h(ctx, spec, vals, extra)
			if err != nil {
				return fmt.Errorf("%w: iterdata: %w", ErrInvalid, err)
			}
			j.inputs, j.objs = ins, objs
		}
		if j.inputs == nil {
			for i := range elems.len() {
				if t := firstByte(elems.at(i)); t != '{' && t != '[' && len(extra) == 0 {
					continue // a scalar alone is always a good input
				}
				if _, err := SplitElement(elems.at(i), extra); err != nil {
					return fmt.Errorf("%w: iterdata element %d: %v", ErrInvalid, i, err)
				}
			}
			j.elems, j.n = elems, elems.len()
			return nil
		}
	}
	if h := c.cfg.Hooks.Spill; h != nil {
		if err := h(ctx, spec, 0, j.inputs); err != nil {
			return fmt.Errorf("storing large task inputs: %w", err)
		}
	}
	j.n = len(j.inputs)
	return nil
}

// input returns task i's input. One made from an element goes through
// Hooks.Spill like any other (a large element travels by reference).
func (j *job) input(i int) (Input, error) {
	if j.elems == nil {
		return j.inputs[i], nil
	}
	in, err := SplitElement(j.elems.at(i), j.extra)
	if err != nil {
		return in, err
	}
	if h := j.c.cfg.Hooks.Spill; h != nil {
		one := []Input{in}
		if err := h(j.ctx, j.spec, i, one); err != nil {
			return in, fmt.Errorf("storing its large input: %w", err)
		}
		in = one[0]
	}
	return in, nil
}
