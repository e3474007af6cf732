package coordinator

import (
	"encoding/json"
	"testing"
)

// TestElements: the index finds the elements json finds, whatever they
// hold (strings with brackets and escapes, nesting, white space).
func TestElements(t *testing.T) {
	for _, in := range []string{
		`[]`, ` [ ] `, `[1]`, `[1,2,3]`, " [ 1 ,\n\t2 , 3 ] ",
		`["a","b,c","d]e","f\"]g","h\\"]`,
		`[{"a":[1,2,{"b":"]}"}]},[[],[[]]],null,true,false,-1.5e3]`,
		`[{} , [] , "" ]`,
	} {
		checkElements(t, in)
	}
}

func checkElements(t *testing.T, in string) {
	t.Helper()
	var want []json.RawMessage
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatalf("%q: %v", in, err)
	}
	e, err := newElements([]byte(in))
	if err != nil {
		t.Fatalf("%q: %v", in, err)
	}
	if e.len() != len(want) {
		t.Fatalf("%q: %d elements, want %d", in, e.len(), len(want))
	}
	for i := range want {
		if string(e.at(i)) != string(want[i]) {
			t.Fatalf("%q: element %d is %q, want %q", in, i, e.at(i), want[i])
		}
	}
}

func FuzzElements(f *testing.F) {
	for _, s := range []string{`[]`, `[1,"a",{"b":[2]}]`, `["\"]",[[]]]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var list []json.RawMessage
		if json.Unmarshal([]byte(in), &list) != nil {
			return // only valid lists reach the index
		}
		checkElements(t, in)
	})
}
