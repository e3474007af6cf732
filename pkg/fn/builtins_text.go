package fn

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"sort"
)

// RegisterTextBuiltins adds the text functions over partitioned objects:
//
//   - wordcount(obj): the number of words in the task's chunk, counted
//     like `LC_ALL=C wc -w` (see CountWords).
//   - wordfreq(obj): a map from word to count for the chunk (words as
//     above, case kept).
//   - merge(values): a reducer summing maps of counts key by key (folds
//     results one by one).
//   - blob(n): a string of n bytes, the letters a to z repeated (for
//     tests and benchmarks of large results).
//
// With sum (a stock built-in), wordcount gives a total; with merge,
// wordfreq gives the frequencies of a whole data set.
func RegisterTextBuiltins(r *Registry) {
	r.Register(Spec{Name: "wordcount", Params: []string{"obj"}, Doc: "number of whitespace-separated words in obj (like wc -w)", Run: func(ctx context.Context, a *Args) (any, error) {
		body, err := objBody(a, "wordcount")
		if err != nil {
			return nil, err
		}
		n, err := CountWords(textCtxReader{ctx, body})
		if err != nil {
			return nil, err
		}
		return n, nil
	}})
	r.Register(Spec{Name: "wordfreq", Params: []string{"obj"}, Doc: "map of word -> count over obj", Run: func(ctx context.Context, a *Args) (any, error) {
		body, err := objBody(a, "wordfreq")
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(textCtxReader{ctx, body})
		sc.Buffer(make([]byte, 64<<10), 1<<30)
		sc.Split(scanWordsC)
		freq := map[string]int64{}
		for sc.Scan() {
			if hasPrintable(sc.Bytes()) {
				freq[sc.Text()]++
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return freq, nil
	}})
	r.Register(Spec{Name: "blob", Params: []string{"n"}, Doc: "a string of n bytes (a..z repeated)", Run: func(ctx context.Context, a *Args) (any, error) {
		var n int
		if err := a.Get("n", &n); err != nil {
			return nil, err
		}
		if n < 0 || n > MaxBlob {
			return nil, BadInput(fmt.Errorf("blob: n must be between 0 and %d, got %d", MaxBlob, n))
		}
		return Blob(n), nil
	}})
	r.Register(Spec{Name: "merge", Params: []string{"values"}, Doc: "sums maps of counts key by key", Run: func(ctx context.Context, a *Args) (any, error) {
		var maps []map[string]json.Number
		if err := a.Get("values", &maps); err != nil {
			return nil, BadInput(fmt.Errorf("merge: values must be a list of objects of numbers: %v", err))
		}
		acc := map[string]*big.Int{}
		for i, m := range maps {
			if err := mergeInto(acc, m); err != nil {
				return nil, BadInput(fmt.Errorf("merge: values[%d]: %v", i, err))
			}
		}
		return countsJSON(acc), nil
	}, Fold: &Fold{
		Init: func() any { return map[string]*big.Int{} },
		Step: func(acc any, next Result) (any, error) {
			var m map[string]json.Number
			if err := json.Unmarshal(next.Value, &m); err != nil {
				return nil, BadInput(fmt.Errorf("merge: result of task %d is not an object of numbers: %s", next.Index, truncate(next.Value)))
			}
			if err := mergeInto(acc.(map[string]*big.Int), m); err != nil {
				return nil, BadInput(fmt.Errorf("merge: result of task %d: %v", next.Index, err))
			}
			return acc, nil
		},
	}})
}

// MaxBlob bounds blob's n.
const MaxBlob = 1 << 30

// Blob returns the string blob(n) returns: n bytes, "abc…z" repeated.
func Blob(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

func objBody(a *Args, name string) (io.Reader, error) {
	if a.Obj == nil || a.Obj.Body == nil {
		return nil, BadInput(fmt.Errorf("%s reads a storage object: pass iterdata such as [\"cos://bucket/prefix/\"] so that the task gets obj", name))
	}
	return a.Obj.Body, nil
}

func mergeInto(acc map[string]*big.Int, m map[string]json.Number) error {
	for k, v := range m {
		n, ok := new(big.Int).SetString(string(v), 10)
		if !ok {
			return fmt.Errorf("count of %q is not an integer: %s", k, v)
		}
		if cur, ok := acc[k]; ok {
			cur.Add(cur, n)
		} else {
			acc[k] = n
		}
	}
	return nil
}

// countsJSON renders counts as a JSON object with sorted keys.
func countsJSON(acc map[string]*big.Int) json.RawMessage {
	keys := make([]string, 0, len(acc))
	for k := range acc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		kb, _ := json.Marshal(k)
		out = append(out, kb...)
		out = append(out, ':')
		out = append(out, acc[k].String()...)
	}
	return append(out, '}')
}

func isSpaceC(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}

// CountWords counts words like GNU `wc -w` in the C locale: a word is a
// run of bytes between white space (space, \t, \n, \v, \f, \r) that holds
// at least one printable ASCII character; other bytes (controls, bytes of
// UTF-8 sequences) neither start nor end a word.
func CountWords(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	in := false
	for {
		k, err := r.Read(buf)
		for _, b := range buf[:k] {
			switch {
			case isSpaceC(b):
				in = false
			case !in && b > ' ' && b < 0x7f:
				in = true
				n++
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func hasPrintable(w []byte) bool {
	for _, b := range w {
		if b > ' ' && b < 0x7f {
			return true
		}
	}
	return false
}

// scanWordsC is bufio.ScanWords with the C locale's spaces.
func scanWordsC(data []byte, atEOF bool) (int, []byte, error) {
	start := 0
	for start < len(data) && isSpaceC(data[start]) {
		start++
	}
	for i := start; i < len(data); i++ {
		if isSpaceC(data[i]) {
			return i + 1, data[start:i], nil
		}
	}
	if atEOF && len(data) > start {
		return len(data), data[start:], nil
	}
	return start, nil, nil
}

// textCtxReader stops reading when ctx is done.
type textCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c textCtxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
