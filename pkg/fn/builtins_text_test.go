package fn

import (
	"context"
	"encoding/json"
	"math/big"
	"os/exec"
	"strings"
	"testing"

	"github.com/skeinrun/skein/pkg/wire"
)

func runText(t *testing.T, r *Registry, name, body string) json.RawMessage {
	t.Helper()
	spec, ok := r.Lookup(name)
	if !ok {
		t.Fatalf("%s not registered", name)
	}
	a, err := spec.Bind(nil, map[string]wire.Value{"obj": wire.Value(`"local:///x"`)})
	if err != nil {
		t.Fatal(err)
	}
	a.Obj = &Object{Object: wire.Object{URL: "local:///x"}, Body: strings.NewReader(body)}
	out, err := spec.Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWordcountMatchesWc(t *testing.T) {
	r := &Registry{}
	RegisterTextBuiltins(r)
	for _, text := range []string{"", " ", "one", "one two\tthree\n", "a\vb\fc\rd  \n\n e", "tail without newline", "ünïcode wörds — dash", "a\x01b \x01 \x80\x80 x\x80"} {
		got := runText(t, r, "wordcount", text)
		cmd := exec.Command("wc", "-w")
		cmd.Env = append(cmd.Environ(), "LC_ALL=C")
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); string(got) != want {
			t.Errorf("wordcount(%q) = %s, wc -w says %s", text, got, want)
		}
	}
}

func TestWordfreqMerge(t *testing.T) {
	r := &Registry{}
	RegisterTextBuiltins(r)
	a := runText(t, r, "wordfreq", "the cat the\ndog")
	b := runText(t, r, "wordfreq", "dog the end")
	if string(a) != `{"cat":1,"dog":1,"the":2}` {
		t.Fatalf("wordfreq = %s", a)
	}
	merge, _ := r.Lookup("merge")
	// List form.
	args, err := merge.Bind([]wire.Value{wire.Value("[" + string(a) + "," + string(b) + "]")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := merge.Run(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cat":1,"dog":2,"end":1,"the":3}`
	if string(out.(json.RawMessage)) != want {
		t.Fatalf("merge = %s", out)
	}
	// Fold form, one result at a time.
	acc := merge.Fold.Init()
	for i, v := range []json.RawMessage{a, b} {
		if acc, err = merge.Fold.Step(acc, Result{Index: i, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	if got := string(countsJSON(acc.(map[string]*big.Int))); got != want {
		t.Fatalf("fold merge = %s", got)
	}
	// Bad input names the problem.
	if _, err := merge.Fold.Step(merge.Fold.Init(), Result{Index: 4, Value: wire.Value(`[1]`)}); err == nil || !strings.Contains(err.Error(), "task 4") {
		t.Fatalf("bad merge input: %v", err)
	}
	wc, _ := r.Lookup("wordcount")
	noObj, _ := wc.Bind(nil, nil)
	if _, err := wc.Run(context.Background(), noObj); err == nil || !strings.Contains(err.Error(), "obj") {
		t.Fatalf("wordcount without obj: %v", err)
	}
}
