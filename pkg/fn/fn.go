package fn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/skeinrun/skein/pkg/wire"
)

// Args are one call's arguments, bound to the function's parameter names:
// positional arguments fill the declared parameters in order, keyword
// arguments fill them by name (Lithops' rules).
type Args struct {
	named []namedArg // few: a list costs less than a map to build
	// Rest holds positional arguments beyond the declared parameters
	// (only for functions declared variadic).
	Rest []wire.Value
	// Obj is the slice of a storage object this call reads, for
	// partitioned data; nil otherwise.
	Obj *Object
	// Env is the job's extra_env.
	Env map[string]string
	// Base is the environment the runtime gives every function (see
	// BaseEnv); Environ applies Env over it.
	Base []string
	// Log receives the function's own log lines (captured into the event).
	Log io.Writer
}

// Object is a partitioned input: the wire description and a reader over
// exactly the object's lines in [Start, End).
type Object struct {
	wire.Object
	Body io.Reader
}

// namedArg is an argument bound to a parameter's name.
type namedArg struct {
	name string
	v    wire.Value
}

// Has reports whether name was passed.
func (a *Args) Has(name string) bool { _, ok := a.Raw(name); return ok }

// Raw returns the JSON text of argument name.
func (a *Args) Raw(name string) (wire.Value, bool) {
	for _, n := range a.named {
		if n.name == name {
			return n.v, true
		}
	}
	return nil, false
}

// Get decodes argument name into out. A missing argument is a bad-input
// error naming it.
func (a *Args) Get(name string, out any) error {
	v, ok := a.Raw(name)
	if !ok {
		return BadInput(fmt.Errorf("missing argument %q", name))
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return BadInput(fmt.Errorf("argument %q: %v", name, err))
	}
	return nil
}

// Number returns argument name as a JSON number.
func (a *Args) Number(name string) (json.Number, error) {
	var n json.Number
	if err := a.Get(name, &n); err != nil {
		return "", err
	}
	return n, nil
}

// Names lists the bound argument names, sorted.
func (a *Args) Names() []string {
	out := make([]string, 0, len(a.named))
	for _, n := range a.named {
		out = append(out, n.name)
	}
	sort.Strings(out)
	return out
}

// GoFunc is a function registered by name. Its result is marshalled to
// JSON (a json.RawMessage passes through unchanged).
type GoFunc func(ctx context.Context, a *Args) (any, error)

// Spec declares a registered Go function.
type Spec struct {
	Name string
	// Params are the parameter names positional arguments bind to.
	Params []string
	// Variadic accepts positional arguments beyond Params (in Args.Rest).
	Variadic bool
	// AnyKwargs accepts keyword arguments not in Params.
	AnyKwargs bool
	Run       GoFunc
	// Reducer shapes (see reduce.go): at most one of Fold and Stream is set
	// for reducers that consume results one by one; a plain Run reducer
	// receives the list of results as its first argument.
	Fold   *Fold
	Stream StreamFunc
	// Ordered asks for results in input order instead of completion order.
	Ordered bool
	Doc     string
}

// Registry maps names to Go functions. The zero value is empty and ready;
// it is safe for concurrent use.
type Registry struct {
	mu sync.RWMutex
	m  map[string]*Spec
}

// Register adds s, replacing a function of the same name.
func (r *Registry) Register(s Spec) {
	if s.Name == "" || (s.Run == nil && s.Fold == nil && s.Stream == nil) {
		panic("fn: Register needs a name and a function")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*Spec)
	}
	c := s
	r.m[s.Name] = &c
}

// Lookup finds a function by name.
func (r *Registry) Lookup(name string) (*Spec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.m[name]
	return s, ok
}

// Names lists the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for k := range r.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Bind applies the argument rules of s to positional and keyword
// arguments.
func (s *Spec) Bind(args []wire.Value, kwargs map[string]wire.Value) (*Args, error) {
	a := &Args{}
	if n := min(len(args), len(s.Params)) + len(kwargs); n > 0 {
		a.named = make([]namedArg, 0, n)
	}
	for i, v := range args {
		if i < len(s.Params) {
			a.named = append(a.named, namedArg{s.Params[i], v})
			continue
		}
		if !s.Variadic {
			return nil, BadInput(fmt.Errorf("%s takes %d positional argument(s) (%s), got %d",
				s.Name, len(s.Params), strings.Join(s.Params, ", "), len(args)))
		}
		a.Rest = append(a.Rest, v)
	}
	for k, v := range kwargs {
		if a.Has(k) {
			return nil, BadInput(fmt.Errorf("%s got multiple values for argument %q", s.Name, k))
		}
		if !s.AnyKwargs && !contains(s.Params, k) {
			return nil, BadInput(fmt.Errorf("%s got an unexpected keyword argument %q (parameters: %s)",
				s.Name, k, strings.Join(s.Params, ", ")))
		}
		a.named = append(a.named, namedArg{k, v})
	}
	return a, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Error is a function failure with its classification. Functions may
// return one to control retries; any other error is a retryable user
// error.
type Error struct {
	Kind      wire.ErrorKind
	Retryable bool
	Err       error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// NonRetryable marks err so that the coordinator does not retry the task.
func NonRetryable(err error) error {
	return &Error{Kind: wire.ErrUser, Retryable: false, Err: err}
}

// BadInput marks err as arguments that do not fit the function (never
// retried).
func BadInput(err error) error {
	return &Error{Kind: wire.ErrBadInput, Retryable: false, Err: err}
}

// Classify turns any error from a function into a wire.TaskError.
func Classify(err error) *wire.TaskError {
	var te *wire.TaskError
	if errors.As(err, &te) {
		return te
	}
	var fe *Error
	if errors.As(err, &fe) {
		return &wire.TaskError{Kind: fe.Kind, Message: fe.Err.Error(), Retryable: fe.Retryable}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &wire.TaskError{Kind: wire.ErrTimeout, Message: "function ran past its deadline", Retryable: true}
	case errors.Is(err, context.Canceled):
		return &wire.TaskError{Kind: wire.ErrCancelled, Message: "task cancelled", Retryable: false}
	}
	return &wire.TaskError{Kind: wire.ErrUser, Message: err.Error(), Retryable: true}
}
