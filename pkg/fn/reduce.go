package fn

import (
	"context"

	"github.com/skeinrun/skein/pkg/wire"
)

// Result is one map result handed to a reducer.
type Result struct {
	// Index is the map task's position in the job's iterdata.
	Index int
	Value wire.Value
	// Obj is the input slice the map task read, for partitioned data.
	Obj *wire.Object
}

// Fold is a reducer that consumes results one at a time:
// acc = Step(acc, next), starting from Init().
type Fold struct {
	Init func() any
	Step func(acc any, next Result) (any, error)
}

// StreamFunc is a reducer that reads results from a channel as they land.
// The channel is closed after the last result; a StreamFunc must drain it
// or return an error.
type StreamFunc func(ctx context.Context, in <-chan Result, a *Args) (any, error)

// IsReducerShape reports whether s consumes results one by one.
func (s *Spec) IsReducerShape() bool { return s.Fold != nil || s.Stream != nil }
