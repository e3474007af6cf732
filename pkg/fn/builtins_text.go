package fn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"sort"
	"unicode"
	"unicode/utf8"
)

// RegisterTextBuiltins adds the text functions over partitioned objects:
//
//   - wordcount(obj): the number of white-space separated words of the
//     task's chunk of UTF-8 text (see CountWords).
//   - wordfreq(obj): a map from word to count for the chunk (words as
//     above, case kept; keys as WordKey makes them).
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
		sc.Split(bufio.ScanWords) // Unicode white space, as CountWords
		freq := map[string]int64{}
		for sc.Scan() {
			freq[WordKey(sc.Bytes())]++
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

// CountWords counts the words of UTF-8 text: a word is a maximal run of
// characters that are not white space, and white space is Unicode's
// (unicode.IsSpace: the ASCII space, \t, \n, \v, \f, \r, U+0085, U+00A0
// and the Z-category spaces such as U+2003 and U+3000). Bytes that are
// not valid UTF-8 count as word characters. On valid UTF-8 this is
// Python's len(text.split()) except for the ASCII separators \x1c–\x1f,
// which Python also splits on; on ASCII text it is `wc -w`.
func CountWords(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	in, keep := false, 0
	for {
		k, err := r.Read(buf[keep:])
		data, eof := buf[:keep+k], err == io.EOF
		i := 0
		for i < len(data) {
			switch byteClass[data[i]] {
			case clsSpace:
				in = false
				i++
				continue
			case clsWord:
				if !in {
					in = true
					n++
				}
				i++
				continue
			}
			if !eof && !utf8.FullRune(data[i:]) {
				break // the rest of this character comes with the next read
			}
			c, size := utf8.DecodeRune(data[i:])
			if unicode.IsSpace(c) {
				in = false
			} else if !in {
				in = true
				n++
			}
			i += size
		}
		keep = copy(buf, data[i:])
		if eof {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Byte classes for CountWords' fast path: a space, a word character, or
// the first byte of a sequence that may encode a space. Only the lead
// bytes C2, E1, E2 and E3 start the encodings of Unicode's non-ASCII
// spaces; every other byte from 0x80 up is part of a character that is
// not a space, or not valid UTF-8, and so belongs to a word either way
// (UTF-8 resynchronises at every lead byte).
const (
	clsWord = iota
	clsSpace
	clsMulti
)

var byteClass = func() (c [256]uint8) {
	for _, b := range []byte{0xc2, 0xe1, 0xe2, 0xe3} {
		c[b] = clsMulti
	}
	for _, b := range []byte{' ', '\t', '\n', '\v', '\f', '\r'} {
		c[b] = clsSpace
	}
	return c
}()

// WordKey is the key wordfreq gives a word: the word itself when it is
// valid UTF-8 without a backslash; otherwise each backslash is doubled
// and each byte that is not valid UTF-8 is written \xHH (two lower-case
// hex digits). Distinct words always get distinct keys, and keys are
// valid UTF-8, so they survive JSON.
func WordKey(w []byte) string {
	if utf8.Valid(w) && bytes.IndexByte(w, '\\') < 0 {
		return string(w)
	}
	const hex = "0123456789abcdef"
	out := make([]byte, 0, len(w)+8)
	for i := 0; i < len(w); {
		c, size := utf8.DecodeRune(w[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			out = append(out, '\\', 'x', hex[w[i]>>4], hex[w[i]&15])
		case c == '\\':
			out = append(out, '\\', '\\')
		default:
			out = append(out, w[i:i+size]...)
		}
		i += size
	}
	return string(out)
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
