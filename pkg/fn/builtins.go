package fn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// Builtins returns a registry holding the stock functions: add, noop,
// sleep, echo, env, fail, sum, product. Each call returns a fresh registry.
func Builtins() *Registry {
	r := &Registry{}
	RegisterBuiltins(r)
	return r
}

// RegisterBuiltins adds the stock functions to r, and the text functions
// of RegisterTextBuiltins.
func RegisterBuiltins(r *Registry) {
	RegisterTextBuiltins(r)
	r.Register(Spec{Name: "add", Params: []string{"x", "y"}, Doc: "x + y", Run: func(ctx context.Context, a *Args) (any, error) {
		x, err := a.Number("x")
		if err != nil {
			return nil, err
		}
		y, err := a.Number("y")
		if err != nil {
			return nil, err
		}
		return arith(x, y, '+')
	}})
	r.Register(Spec{Name: "env", Doc: "the function's environment as an object (Args.Environ: the runtime's base environment and the job's extra_env)", Run: func(ctx context.Context, a *Args) (any, error) {
		out := make(map[string]string)
		for _, kv := range a.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
		return out, nil
	}})
	r.Register(Spec{Name: "noop", Variadic: true, AnyKwargs: true, Doc: "returns null", Run: func(ctx context.Context, a *Args) (any, error) {
		return nil, nil
	}})
	r.Register(Spec{Name: "sleep", Params: []string{"x", "value"}, Doc: "sleeps x seconds, returns value if given, else x", Run: func(ctx context.Context, a *Args) (any, error) {
		n, err := a.Number("x")
		if err != nil {
			return nil, err
		}
		secs, err := n.Float64()
		if err != nil || secs < 0 || math.IsInf(secs, 0) {
			return nil, BadInput(fmt.Errorf("sleep: x must be a non-negative number of seconds, got %s", n))
		}
		t := time.NewTimer(time.Duration(secs * float64(time.Second)))
		defer t.Stop()
		select {
		case <-t.C:
			if v, ok := a.Raw("value"); ok {
				return v, nil
			}
			return json.RawMessage(n), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
	r.Register(Spec{Name: "echo", Params: []string{"x"}, AnyKwargs: true, Doc: "returns x, or all keyword arguments as an object", Run: func(ctx context.Context, a *Args) (any, error) {
		names := a.Names()
		if len(names) == 1 && names[0] == "x" {
			v, _ := a.Raw("x")
			return v, nil
		}
		out := make(map[string]json.RawMessage, len(names))
		for _, k := range names {
			v, _ := a.Raw(k)
			out[k] = v
		}
		return out, nil
	}})
	r.Register(Spec{Name: "fail", Params: []string{"message"}, AnyKwargs: true, Variadic: true, Doc: "always fails (for tests)", Run: func(ctx context.Context, a *Args) (any, error) {
		msg := "fail called"
		if a.Has("message") {
			var s any
			_ = a.Get("message", &s)
			msg = fmt.Sprint(s)
		}
		return nil, errors.New(msg)
	}})
	r.Register(Spec{Name: "sum", Params: []string{"values"}, Doc: "sum of a list of numbers", Run: func(ctx context.Context, a *Args) (any, error) {
		return foldList(a, "0", '+')
	}, Fold: &Fold{Init: func() any { return json.Number("0") }, Step: numberStep('+')}})
	r.Register(Spec{Name: "product", Params: []string{"values"}, Doc: "product of a list of numbers", Run: func(ctx context.Context, a *Args) (any, error) {
		return foldList(a, "1", '*')
	}, Fold: &Fold{Init: func() any { return json.Number("1") }, Step: numberStep('*')}})
}

func foldList(a *Args, init json.Number, op byte) (any, error) {
	var xs []json.Number
	if err := a.Get("values", &xs); err != nil {
		return nil, BadInput(fmt.Errorf("values must be a list of numbers: %v", err))
	}
	acc := init
	for _, x := range xs {
		v, err := arith(acc, x, op)
		if err != nil {
			return nil, err
		}
		acc = v
	}
	return acc, nil
}

func numberStep(op byte) func(acc any, next Result) (any, error) {
	return func(acc any, next Result) (any, error) {
		var n json.Number
		if err := json.Unmarshal(next.Value, &n); err != nil {
			return nil, BadInput(fmt.Errorf("result of task %d is not a number: %s", next.Index, truncate(next.Value)))
		}
		return arith(acc.(json.Number), n, op)
	}
}

func truncate(v wire.Value) string {
	if len(v) > 64 {
		return string(v[:64]) + "…"
	}
	return string(v)
}

// arith applies op to two JSON numbers, exactly for integers (of any
// size) and in float64 otherwise.
func arith(x, y json.Number, op byte) (json.Number, error) {
	bx, okx := new(big.Int).SetString(string(x), 10)
	by, oky := new(big.Int).SetString(string(y), 10)
	if okx && oky {
		switch op {
		case '+':
			return json.Number(bx.Add(bx, by).String()), nil
		case '*':
			return json.Number(bx.Mul(bx, by).String()), nil
		}
	}
	fx, err := x.Float64()
	if err != nil {
		return "", BadInput(fmt.Errorf("not a number: %q", x))
	}
	fy, err := y.Float64()
	if err != nil {
		return "", BadInput(fmt.Errorf("not a number: %q", y))
	}
	var r float64
	switch op {
	case '+':
		r = fx + fy
	case '*':
		r = fx * fy
	}
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return "", NonRetryable(fmt.Errorf("result out of range"))
	}
	return json.Number(strconv.FormatFloat(r, 'g', -1, 64)), nil
}
