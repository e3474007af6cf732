package fn

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/big"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode"
	"unicode/utf8"

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

// wordcount counts white-space separated words of UTF-8 text; the oracle
// is Python's str.split() over the text decoded with surrogateescape
// (invalid bytes are word characters there too).
func TestWordcountMatchesPythonSplit(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed as the oracle of word counts:", err)
	}
	r := &Registry{}
	RegisterTextBuiltins(r)
	texts := []string{"", " ", "one", "one two\tthree\n", "a\vb\fc\rd  \n\n e", "tail without newline",
		"привет мир\nhello — world\n", "ünïcode wörds — dash", "λόγος καὶ 中文 字\u3000x", "nbsp\u00a0sep\u2003em\u0085nel",
		"a\x01b \x01 \x80\x80 x\x80", "caf\xe9 caf\xe8\n", "\xff\xfe", "split\xe2\x80"}
	for _, text := range texts {
		got := runText(t, r, "wordcount", text)
		cmd := exec.Command(python, "-c", "import sys; print(len(sys.stdin.buffer.read().decode('utf-8','surrogateescape').split()))")
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); string(got) != want {
			t.Errorf("wordcount(%q) = %s, Python's split says %s", text, got, want)
		}
		// The same, read a byte at a time (characters split across reads).
		n, err := CountWords(iotest.OneByteReader(strings.NewReader(text)))
		if err != nil || strconv.FormatInt(n, 10) != string(got) {
			t.Errorf("wordcount(%q) one byte at a time = %d (%v), want %s", text, n, err, got)
		}
	}
}

// On ASCII text the count is `wc -w`'s.
func TestWordcountMatchesWcOnASCII(t *testing.T) {
	r := &Registry{}
	RegisterTextBuiltins(r)
	for _, text := range []string{"", " ", "one", "one two\tthree\n", "a\vb\fc\rd  \n\n e", "tail without newline"} {
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

// Words that are not valid UTF-8 keep distinct keys through wordfreq and
// merge, and the totals are exact.
func TestWordfreqInvalidUTF8(t *testing.T) {
	r := &Registry{}
	RegisterTextBuiltins(r)
	a := runText(t, r, "wordfreq", "caf\xe9 caf\xe8\n caf\xe9 a\\b \\xe9")
	want := `{"\\\\xe9":1,"a\\\\b":1,"caf\\xe8":1,"caf\\xe9":2}`
	if string(a) != want {
		t.Fatalf("wordfreq = %s, want %s", a, want)
	}
	merge, _ := r.Lookup("merge")
	args, err := merge.Bind([]wire.Value{wire.Value("[" + string(a) + "," + string(a) + "]")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := merge.Run(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out.(json.RawMessage)); got != `{"\\\\xe9":2,"a\\\\b":2,"caf\\xe8":2,"caf\\xe9":4}` {
		t.Fatalf("merge = %s", got)
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

// referenceWords is the plain definition CountWords' fast path must
// match: decode every character, split on unicode.IsSpace.
func referenceWords(b []byte) int64 {
	var n int64
	in := false
	for len(b) > 0 {
		c, size := utf8.DecodeRune(b)
		if unicode.IsSpace(c) {
			in = false
		} else if !in {
			in = true
			n++
		}
		b = b[size:]
	}
	return n
}

func FuzzCountWords(f *testing.F) {
	for _, s := range []string{"", "a b", "привет мир", "x\u2003y\u3000z\u0085w\u00a0v\u1680u", "caf\xe9 \xe2\x80 \xe2\x80\x80", "\xc2\xa0\xc2"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := referenceWords(b)
		for _, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b)), iotest.HalfReader(bytes.NewReader(b))} {
			if got, err := CountWords(r); err != nil || got != want {
				t.Fatalf("CountWords(%q) = %d, %v; want %d", b, got, err, want)
			}
		}
	})
}
