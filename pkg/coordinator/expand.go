package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// ErrInvalid marks a job spec the coordinator refuses.
var ErrInvalid = errors.New("invalid job")

// Validate checks a job spec and reports every bad field by name.
func Validate(s *wire.JobSpec) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch s.Kind {
	case wire.JobCall, wire.JobMap, wire.JobMapReduce:
	default:
		bad("kind %q: want call, map or mapreduce", s.Kind)
	}
	if _, err := fn.ParseRef(s.Function); err != nil {
		bad("function: %v", err)
	}
	if s.Kind == wire.JobMapReduce {
		if s.ReduceFunction == "" {
			bad("reduce_function: required for mapreduce")
		} else if _, err := fn.ParseRef(s.ReduceFunction); err != nil {
			bad("reduce_function: %v", err)
		}
	} else if s.ReduceFunction != "" {
		bad("reduce_function: only for mapreduce jobs")
	}
	if err := checkMonitor(s); err != nil {
		errs = append(errs, err)
	}
	switch s.ReduceMode {
	case "", wire.ReduceStreaming, wire.ReduceBarrier:
	default:
		bad("reduce_mode %q: want streaming or barrier", s.ReduceMode)
	}
	if s.Kind == wire.JobCall {
		if len(s.Iterdata) > 0 || s.IterdataRef != nil {
			bad("iterdata: not used by call jobs (use data)")
		}
		if s.DataRef != nil && len(s.Data) > 0 {
			bad("data and data_ref: set one, not both")
		}
		if err := checkJSON(s.Data); err != nil {
			bad("data: %v", err)
		}
	} else {
		if len(s.Data) > 0 || s.DataRef != nil {
			bad("data: not used by %s jobs (use iterdata)", s.Kind)
		}
		if s.IterdataRef != nil {
			if len(s.Iterdata) > 0 {
				bad("iterdata and iterdata_ref: set one, not both")
			}
		} else if len(bytes.TrimSpace(s.Iterdata)) == 0 {
			bad("iterdata: required for %s jobs", s.Kind)
		} else if err := checkJSON(s.Iterdata); err != nil {
			bad("iterdata: %v", err)
		} else if t := firstByte(s.Iterdata); t != '[' {
			bad("iterdata: must be a JSON list, got %s", jsonKind(t))
		}
	}
	if len(s.ExtraParams) > 0 && !isNull(s.ExtraParams) {
		if err := checkJSON(s.ExtraParams); err != nil {
			bad("extra_params: %v", err)
		} else if firstByte(s.ExtraParams) != '{' {
			bad("extra_params: must be a JSON object, got %s", jsonKind(firstByte(s.ExtraParams)))
		}
	}
	if s.ChunkSize != 0 && s.ChunkN != 0 {
		bad("chunk_size and chunk_n: set one or the other, not both")
	}
	if s.ChunkSize < 0 {
		bad("chunk_size %d: must be positive", s.ChunkSize)
	}
	if s.ChunkN < 0 {
		bad("chunk_n %d: must be positive", s.ChunkN)
	}
	if s.TimeoutMS < 0 {
		bad("timeout %dms: must not be negative", s.TimeoutMS)
	}
	if s.TaskTimeoutMS < 0 {
		bad("task_timeout %dms: must not be negative", s.TaskTimeoutMS)
	}
	for name, v := range map[string]int{"runtime_memory": s.RuntimeMemory, "map_runtime_memory": s.MapRuntimeMemory, "reduce_runtime_memory": s.ReduceRuntimeMemory} {
		if v < 0 {
			bad("%s %d: must not be negative", name, v)
		}
	}
	if s.InvokePoolThreads < 0 {
		bad("invoke_pool_threads %d: must not be negative", s.InvokePoolThreads)
	}
	if s.Retries < 0 || s.Retries > 100 {
		bad("retries %d: must be between 0 and 100", s.Retries)
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			bad("env: bad variable name %q", k)
		}
	}
	if s.Pool != "" && !validPool(s.Pool) {
		bad("pool %q: letters, digits, - and _ only", s.Pool)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func validPool(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

func isNull(v []byte) bool { return string(bytes.TrimSpace(v)) == "null" }

func firstByte(v []byte) byte {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// JSONKind names the kind of JSON value that starts with b ("an object",
// "a list", …) for error messages.
func JSONKind(b byte) string { return jsonKind(b) }

func jsonKind(b byte) string {
	switch b {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case 0:
		return "nothing"
	}
	return "a number"
}

// checkJSON reports malformed JSON with the byte offset, line and column.
func checkJSON(v []byte) error {
	if len(bytes.TrimSpace(v)) == 0 {
		return nil
	}
	return JSONError(v)
}

// JSONError returns nil for valid JSON, else an error that shows where it
// breaks.
func JSONError(v []byte) error {
	if json.Valid(v) {
		return nil // the common case, without decoding anything
	}
	var x any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	err := dec.Decode(&x)
	if err == nil {
		if dec.More() {
			off := dec.InputOffset()
			return fmt.Errorf("malformed JSON at %s", position(v, off+1, "unexpected data after the JSON value"))
		}
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("malformed JSON at %s", position(v, se.Offset, se.Error()))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("malformed JSON at %s", position(v, int64(len(v))+1, "unexpected end of input"))
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

// position renders a byte offset as line:column, the message, and a caret
// under the offending character.
func position(v []byte, off int64, msg string) string {
	// off counts the offending character: it sits at index off-1.
	at := int(off) - 1
	if at < 0 {
		at = 0
	}
	if at > len(v) {
		at = len(v)
	}
	line, lineStart := 1, 0
	for i := 0; i < at; i++ {
		if v[i] == '\n' {
			line++
			lineStart = i + 1
		}
	}
	col := at - lineStart + 1
	end := bytes.IndexByte(v[lineStart:], '\n')
	if end < 0 {
		end = len(v) - lineStart
	}
	text := string(v[lineStart : lineStart+end])
	caret := at - lineStart
	if len(text) > 80 {
		from := caret - 40
		if from < 0 {
			from = 0
		}
		to := from + 80
		if to > len(text) {
			to = len(text)
		}
		text = text[from:to]
		caret -= from
	}
	return fmt.Sprintf("line %d, column %d (byte %d): %s\n    %s\n    %s^", line, col, at, msg, text, strings.Repeat(" ", caret))
}

// Input is one task's arguments.
type Input struct {
	Args   []wire.Value
	Kwargs map[string]wire.Value
	// Ref, when set, names a stored {"args":…,"kwargs":…} that replaces
	// Args and Kwargs (Task.InputRef).
	Ref string
}

// SplitElement applies Lithops' rules to one data or iterdata element: an
// object is keyword arguments, a list is positional arguments, anything
// else is the single positional argument. extra (an object) is merged
// into the keyword arguments; a name set twice is an error.
func SplitElement(elem wire.Value, extra map[string]wire.Value) (Input, error) {
	var in Input
	switch firstByte(elem) {
	case 0:
	case '{':
		if err := json.Unmarshal(elem, &in.Kwargs); err != nil {
			return in, err
		}
	case '[':
		if err := json.Unmarshal(elem, &in.Args); err != nil {
			return in, err
		}
	default:
		in.Args = []wire.Value{elem}
	}
	if len(extra) > 0 {
		if in.Kwargs == nil {
			in.Kwargs = make(map[string]wire.Value, len(extra))
		}
		for k, v := range extra {
			if _, dup := in.Kwargs[k]; dup {
				return in, fmt.Errorf("argument %q is set both by the element and by extra_params", k)
			}
			in.Kwargs[k] = v
		}
	}
	return in, nil
}

// ParseExtra decodes extra_params.
func ParseExtra(v wire.Value) (map[string]wire.Value, error) {
	if len(bytes.TrimSpace(v)) == 0 || isNull(v) {
		return nil, nil
	}
	var m map[string]wire.Value
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("extra_params: %v", err)
	}
	return m, nil
}

// SplitList decodes a JSON list into its elements.
func SplitList(v wire.Value) ([]wire.Value, error) {
	var xs []wire.Value
	if err := json.Unmarshal(v, &xs); err != nil {
		return nil, err
	}
	return xs, nil
}
