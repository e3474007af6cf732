package client

import (
	"encoding/json"
	"errors"
	"testing"
)

// scanAll runs text through a scanner, split into pieces of n bytes.
func scanAll(text string, n int) error {
	var s scanner
	for len(text) > 0 {
		k := min(n, len(text))
		if err := s.write([]byte(text[:k])); err != nil {
			return err
		}
		text = text[k:]
	}
	return s.end()
}

func TestScanner(t *testing.T) {
	for _, tc := range []struct {
		in   string
		off  int64 // -1: valid
		elem int
	}{
		{`[]`, -1, 0}, {` [ 1 , -2.5e+3, "a\"b\\u00e9", true, false, null, {"k": [{}]} ] `, -1, 0},
		{`{"a":1,"b":[1,2]}`, -1, 0}, {`"s"`, -1, 0}, {`0`, -1, 0}, {`-0.1E5`, -1, 0}, {"123 \n", -1, 0},
		{`[1,2,x]`, 5, 2}, {`[1 2]`, 3, 0}, {`[1,]`, 3, 1}, {`{"a" 1}`, 5, 0}, {`{"a":1,"b"}`, 10, 1},
		{`[01]`, 2, 0}, {`[1.]`, 3, 0}, {`[1e]`, 3, 0}, {`[tru]`, 4, 0}, {`["a\x"]`, 4, 0}, {`["\u12g4"]`, 6, 0},
		{"[\"a\nb\"]", 3, 0}, {`[1] 2`, 4, -1}, {`[1,2`, 4, 1}, {``, 0, -1}, {`   `, 3, -1}, {`{`, 1, -1},
	} {
		for _, n := range []int{1, 3, 1 << 20} {
			err := scanAll(tc.in, n)
			valid := json.Valid([]byte(tc.in))
			if (err == nil) != valid {
				t.Fatalf("%q (pieces of %d): scanner says %v, json.Valid %v", tc.in, n, err, valid)
			}
			if tc.off < 0 {
				continue
			}
			var ie *InputError
			if !errors.As(err, &ie) || ie.Offset != tc.off || ie.Element != tc.elem {
				t.Fatalf("%q (pieces of %d): %#v, want offset %d, element %d", tc.in, n, err, tc.off, tc.elem)
			}
		}
	}
}

// FuzzScanner: the scanner accepts exactly what json.Valid accepts,
// however the text is cut.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{`[]`, `{"a":[1,-2.5e3,"x\u00e9"]}`, `[1,2,x]`, `tru`, `"a\\"`, ` 0 `} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, in string, n int) {
		if n <= 0 || n > 64 {
			n = 7
		}
		err := scanAll(in, n)
		if valid := json.Valid([]byte(in)); (err == nil) != valid {
			t.Fatalf("%q: scanner says %v, json.Valid %v", in, err, valid)
		}
		var ie *InputError
		if err != nil && (!errors.As(err, &ie) || ie.Offset < 0 || ie.Offset > int64(len(in))) {
			t.Fatalf("%q: %v: want an InputError with an offset in the text", in, err)
		}
	})
}
