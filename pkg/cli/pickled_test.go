package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinrun/skein/pkg/wire"
)

// TestShipPickled: py:@PATH becomes py:@NAME with the file among the
// shipped modules; py:@NAME and other references are left alone; two
// pickles with one base name, or a missing file, are usage errors.
func TestShipPickled(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "f.pkl"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "r.pkl"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &wire.JobSpec{Function: "py:@" + filepath.Join(dir, "a", "f.pkl"), ReduceFunction: "py:@" + filepath.Join(dir, "r.pkl"),
		IncludeModules: []string{"helpers.py"}}
	if err := shipPickled(s); err != nil {
		t.Fatal(err)
	}
	if s.Function != "py:@f.pkl" || s.ReduceFunction != "py:@r.pkl" {
		t.Errorf("refs = %q, %q", s.Function, s.ReduceFunction)
	}
	want := []string{"helpers.py", filepath.Join(dir, "a", "f.pkl"), filepath.Join(dir, "r.pkl")}
	if strings.Join(s.IncludeModules, ",") != strings.Join(want, ",") {
		t.Errorf("include = %q, want %q", s.IncludeModules, want)
	}
	// The same file for map and reduce is shipped once.
	same := &wire.JobSpec{Function: "py:@" + filepath.Join(dir, "r.pkl"), ReduceFunction: "py:@" + filepath.Join(dir, "r.pkl")}
	if err := shipPickled(same); err != nil || len(same.IncludeModules) != 1 {
		t.Errorf("same file twice: %v, include %q", err, same.IncludeModules)
	}
	for _, keep := range []string{"py:@f.pkl", "py:mod:fn", "add", "cmd:echo a/b"} {
		k := &wire.JobSpec{Function: keep}
		if err := shipPickled(k); err != nil || k.Function != keep || len(k.IncludeModules) != 0 {
			t.Errorf("%q: %v, became %q with %q", keep, err, k.Function, k.IncludeModules)
		}
	}
	for _, bad := range []struct {
		s    *wire.JobSpec
		want string
	}{
		{&wire.JobSpec{Function: "py:@" + filepath.Join(dir, "a", "f.pkl"), ReduceFunction: "py:@" + filepath.Join(dir, "b", "f.pkl")}, "same file name"},
		{&wire.JobSpec{Function: "py:@" + filepath.Join(dir, "none.pkl")}, "no such file"},
		{&wire.JobSpec{Function: "py:@" + dir + "/"}, "no such file"},
	} {
		err := shipPickled(bad.s)
		if _, ok := err.(*usageError); !ok || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: got %v, want a usage error containing %q", bad.s, err, bad.want)
		}
	}
}
