package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/wire"
)

// Reducer runs reduce tasks: it reads the group's feed from the event
// stream (from the position the task names, the job's start, so a
// redelivered reducer sees every result again), drops duplicates by map index, and hands results to the
// reducer function as they arrive: one by one to a fold or a stream
// reducer, as a list (in iterdata order) to a plain one.
type Reducer struct {
	Bus      bus.Bus
	Registry *fn.Registry
	Hosts    map[string]fn.Host
	// FuncEnv is the base environment of Go reducers (fn.Args.Base).
	FuncEnv []string
	// Resolve loads a result stored by reference (nil: refs are errors).
	Resolve func(ctx context.Context, ref string) (wire.Value, error)
	// Prepare, when set, completes a host call (shipped modules).
	Prepare func(ctx context.Context, t *wire.Task, c *fn.Call) error
	// OnInput, when set, is called as each distinct input arrives (for
	// measurements and plots).
	OnInput func(index int, at time.Time)
	// Verifier, when set, admits only feed messages the coordinator
	// signed; others are logged and skipped.
	Verifier Verifier
	// Logger receives the feed messages skipped; nil discards.
	Logger *slog.Logger
}

// Verifier checks that a message comes from the coordinator
// (sign.Verifier).
type Verifier interface {
	Verify(m bus.Message) error
}

// Reduce runs reduce task t to its result.
func (rd *Reducer) Reduce(ctx context.Context, t *wire.Task, slot int, logw io.Writer, arrivals *[]int64) (wire.Value, error) {
	ref, err := fn.ParseRef(t.Function)
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrUnknownFn, Message: "reduce function: " + err.Error()}
	}
	var spec *fn.Spec
	if ref.Scheme == "go" {
		s, ok := rd.Registry.Lookup(ref.Name)
		if !ok {
			return nil, &wire.TaskError{Kind: wire.ErrUnknownFn,
				Message: fmt.Sprintf("unknown reduce function %q (this runtime has: %s)", ref.Name, strings.Join(rd.Registry.Names(), ", "))}
		}
		spec = s
	} else if _, ok := rd.Hosts[ref.Scheme]; !ok {
		return nil, &wire.TaskError{Kind: wire.ErrUnknownFn, Message: fmt.Sprintf("this runtime cannot run %s functions (%s)", ref.Scheme, t.Function)}
	}
	ordered := t.Ordered || (spec != nil && spec.Ordered)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if t.FeedFrom == 0 {
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Message: "reduce task without the stream position of its feed (a coordinator older than this runtime?)"}
	}
	feed, err := rd.Bus.Subscribe(ctx, t.Feed, bus.SubscribeOptions{From: t.FeedFrom})
	if err != nil {
		return nil, &wire.TaskError{Kind: wire.ErrInternal, Message: "reading the reducer's input feed: " + err.Error(), Retryable: true}
	}
	in := make(chan fn.Result, 256)
	errc := make(chan error, 1)
	go func() {
		errc <- rd.read(ctx, t, feed, in, ordered, arrivals)
		close(in)
	}()

	var out any
	switch {
	case spec != nil && spec.Fold != nil:
		acc := spec.Fold.Init()
		for r := range in {
			if acc, err = spec.Fold.Step(acc, r); err != nil {
				cancel()
				for range in {
				}
				return nil, err
			}
		}
		out = acc
	case spec != nil && spec.Stream != nil:
		args, berr := spec.Bind(nil, nil)
		if berr != nil {
			return nil, berr
		}
		args.Env, args.Log = t.Env, logw
		out, err = spec.Stream(ctx, in, args)
		cancel()
		for range in {
		}
		if err != nil {
			return nil, err
		}
	default:
		// A list reducer: assemble the list (in iterdata order) while the
		// maps run, then call once.
		var got []fn.Result
		for r := range in {
			got = append(got, r)
		}
		if err := <-errc; err != nil {
			return nil, err
		}
		errc <- nil
		sort.Slice(got, func(a, b int) bool { return got[a].Index < got[b].Index })
		list := make([]json.RawMessage, len(got))
		for i, r := range got {
			list[i] = json.RawMessage(r.Value)
			if len(list[i]) == 0 {
				list[i] = json.RawMessage("null")
			}
		}
		raw, merr := json.Marshal(list)
		if merr != nil {
			return nil, merr
		}
		args := []wire.Value{raw}
		if spec != nil {
			a, berr := spec.Bind(args, nil)
			if berr != nil {
				return nil, berr
			}
			a.Env, a.Base, a.Log = t.Env, rd.FuncEnv, logw
			out, err = spec.Run(ctx, a)
		} else {
			c := &fn.Call{Ref: ref.Name, Slot: slot, Job: t.Job, Task: t.Index, Args: args, Env: t.Env, MemoryMB: t.MemoryMB, Log: logw}
			if rd.Prepare != nil {
				if err := rd.Prepare(ctx, t, c); err != nil {
					return nil, err
				}
			}
			var v wire.Value
			v, err = rd.Hosts[ref.Scheme].Call(ctx, c)
			out = json.RawMessage(v)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	return marshalResult(out)
}

// read delivers each distinct input of the group once, then returns.
func (rd *Reducer) read(ctx context.Context, t *wire.Task, feed <-chan bus.Message, in chan<- fn.Result, ordered bool, arrivals *[]int64) error {
	// Map indices are the job's: a group's are not 0..Expect-1.
	seen := make(map[int]struct{}, t.Expect)
	got := 0
	count := t.Expect
	eos := false
	var pending map[int]fn.Result
	next := t.IndexBase
	if ordered {
		pending = make(map[int]fn.Result)
	}
	send := func(r fn.Result) error {
		select {
		case in <- r:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for got < count || !eos {
		if eos && got >= count {
			break
		}
		if count == 0 && eos {
			break
		}
		var m bus.Message
		var ok bool
		select {
		case m, ok = <-feed:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &wire.TaskError{Kind: wire.ErrInternal, Message: "reducer feed closed", Retryable: true}
		}
		if rd.Verifier != nil {
			if err := rd.Verifier.Verify(m); err != nil {
				rd.logger().Warn("runtime: skipping a feed message the coordinator did not sign", "job", t.Job, "group", t.Index, "seq", m.Seq, "err", err)
				continue
			}
		}
		// A malformed message on the feed subject (not the coordinator's)
		// is skipped, never the end of the reducer.
		var f wire.Feed
		if err := wire.Decode(m.Data, wire.KindFeed, &f); err != nil || f.Job != t.Job {
			rd.logger().Warn("runtime: skipping a malformed feed message", "job", t.Job, "group", t.Index, "seq", m.Seq, "err", err)
			continue
		}
		if f.EOS {
			eos = true
			count = f.Count
		}
		for _, it := range f.Items {
			if _, dup := seen[it.Index]; dup || it.Index < 0 {
				continue // a duplicate (replay or redelivery) is never reduced twice
			}
			seen[it.Index] = struct{}{}
			got++
			v := it.Value
			if it.Ref != "" {
				if rd.Resolve == nil {
					return &wire.TaskError{Kind: wire.ErrInternal, Message: "a map result is stored by reference but this runtime has no storage configured"}
				}
				var err error
				if v, err = rd.Resolve(ctx, it.Ref); err != nil {
					return &wire.TaskError{Kind: wire.ErrInternal, Message: "loading a map result: " + err.Error(), Retryable: true}
				}
			}
			now := time.Now()
			if arrivals != nil {
				*arrivals = append(*arrivals, now.UnixNano())
			}
			if rd.OnInput != nil {
				rd.OnInput(it.Index, now)
			}
			r := fn.Result{Index: it.Index, Value: v, Obj: it.Obj}
			if !ordered {
				if err := send(r); err != nil {
					return err
				}
				continue
			}
			pending[r.Index] = r
			for {
				p, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				if err := send(p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (rd *Reducer) logger() *slog.Logger {
	if rd.Logger != nil {
		return rd.Logger
	}
	return slog.New(slog.DiscardHandler)
}
