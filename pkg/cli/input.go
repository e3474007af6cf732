package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// inputSource is where a job's data or iterdata comes from: a flag's
// value, a file or stdin. It is read once, while it is sent
// (client.StreamInput): a file of any size costs submit a chunk or two of
// memory, not copies of the whole.
type inputSource struct {
	name string // for errors: "--iterdata-from FILE"
	r    io.Reader
	c    io.Closer
	path string // the file, to show where a malformed one breaks
}

func (in *inputSource) Close() {
	if in != nil && in.c != nil {
		in.c.Close()
	}
}

// openInput opens --data-from or --iterdata-from (- is stdin).
func openInput(flag, from string, env Env) (*inputSource, error) {
	src := &inputSource{name: flag + " " + from}
	if from == "-" {
		src.r = env.Stdin
		return src, nil
	}
	f, err := os.Open(from)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	src.r, src.c, src.path = f, f, from
	return src, nil
}

// dataInput is a call's arguments: --data, --data-from, or both merged
// (both objects; the merge reads the file into memory).
func dataInput(data, from string, env Env) (*inputSource, error) {
	switch {
	case from == "" && data == "":
		return nil, nil
	case from == "":
		if err := coordinator.JSONError([]byte(data)); err != nil {
			return nil, usagef("--data: %v", err)
		}
		return &inputSource{name: "--data", r: strings.NewReader(data)}, nil
	case data == "":
		return openInput("--data-from", from, env)
	}
	merged, err := mergeData(data, from, env)
	if err != nil {
		return nil, err
	}
	return &inputSource{name: "--data-from " + from, r: strings.NewReader(string(merged))}, nil
}

// iterdataInput is a map's iterdata: --iterdata or --iterdata-from.
func iterdataInput(iter, from string, env Env) (*inputSource, error) {
	switch {
	case iter != "" && from != "":
		return nil, usagef("give --iterdata or --iterdata-from, not both")
	case iter == "" && from == "":
		return nil, usagef("--iterdata or --iterdata-from is required")
	case from != "":
		return openInput("--iterdata-from", from, env)
	}
	if err := coordinator.JSONError([]byte(iter)); err != nil {
		return nil, usagef("--iterdata: %v", err)
	}
	if c := firstNonSpace(iter); c != '[' {
		return nil, usagef("--iterdata: must be a JSON list, got %s", coordinator.JSONKind(c))
	}
	return &inputSource{name: "--iterdata", r: strings.NewReader(iter)}, nil
}

// standIn sets a placeholder input on s so that the rest of the spec can
// be checked before the input is read.
func (in *inputSource) standIn(s *wire.JobSpec) {
	if in == nil {
		return
	}
	if s.Kind == wire.JobCall {
		s.Data = wire.Value("null")
	} else {
		s.Iterdata = wire.Value("[]")
	}
}

// send reads the input and sets it on s, inline or by reference. A
// malformed input is a usage error naming where it came from.
func (in *inputSource) send(ctx context.Context, c *client.Client, s *wire.JobSpec) error {
	s.Data, s.Iterdata = nil, nil
	if in == nil {
		return nil
	}
	err := c.StreamInput(ctx, s, in.r)
	var ie *client.InputError
	if !errors.As(err, &ie) {
		return err
	}
	if ie.Offset >= 0 && in.path != "" {
		return usagef("%s: malformed JSON at %s", in.name, where(in.path, ie))
	}
	return usagef("%s: %v", in.name, err)
}

// where shows where a malformed file breaks, as line, column, byte and
// the line's text with a caret (the file is read again: only a bad input
// pays for it).
func where(path string, ie *client.InputError) string {
	at := ie.Offset
	f, err := os.Open(path)
	if err != nil || at < 0 {
		return strings.TrimPrefix(ie.Error(), "malformed JSON ")
	}
	defer f.Close()
	br := bufio.NewReader(f)
	line, col := 1, 1
	var text []byte
	for off := int64(0); ; off++ {
		b, err := br.ReadByte()
		if err != nil || (off >= at && b == '\n') {
			break
		}
		if off < at {
			if b == '\n' {
				line, col, text = line+1, 1, text[:0]
				continue
			}
			col++
		}
		if len(text) < 4096 {
			text = append(text, b)
		}
	}
	caret := col - 1
	if len(text) > 80 {
		from := max(caret-40, 0)
		text = text[from:min(from+80, len(text))]
		caret -= from
	}
	pos := fmt.Sprintf("byte %d", at)
	if ie.Element >= 0 {
		pos += fmt.Sprintf(" (in element %d)", ie.Element)
	}
	return fmt.Sprintf("line %d, column %d, %s: %s\n    %s\n    %s^", line, col, pos, ie.Msg, text, strings.Repeat(" ", caret))
}
