package modpack

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/pyhost"
	"github.com/skeinrun/skein/pkg/wire"
)

func findPython(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(testenv.Python); p != "" {
		return p
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return p
	}
	return testenv.Require(t, testenv.Python)
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tree lays out a module file and a package with the clutter that must
// not be shipped.
func tree(t *testing.T) string {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"my_functions.py":                  "def add(x, y=0):\n    return x + y\n",
		"pkg/__init__.py":                  "",
		"pkg/core.py":                      "VALUE = 1\n",
		"pkg/sub/__init__.py":              "",
		"pkg/sub/deep.py":                  "from pkg.core import VALUE\n\ndef f():\n    return VALUE + 1\n",
		"pkg/sub/deep_test.py":             "",
		"pkg/__pycache__/core.cpython.pyc": "junk",
		"pkg/stale.pyc":                    "junk",
		"pkg/tests/test_core.py":           "",
		"pkg/data/table.csv":               "a,b\n",
	})
	return dir
}

func TestPackContentsAndDeterminism(t *testing.T) {
	dir := tree(t)
	opt := Options{BaseDir: dir, Python: findPython(t)}
	ctx := context.Background()
	a, err := Pack(ctx, []string{"./my_functions.py", "pkg"}, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"my_functions.py", "pkg/__init__.py", "pkg/core.py", "pkg/data/table.csv", "pkg/sub/__init__.py",
		"pkg/sub/deep.py", "pkg/sub/deep_test.py", "pkg/tests/test_core.py"}
	if !reflect.DeepEqual(a.Files, want) {
		t.Errorf("files = %q\nwant %q", a.Files, want)
	}
	// Same input, other order, other mtimes: same bytes, same hash.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "pkg/core.py"), later, later); err != nil {
		t.Fatal(err)
	}
	b, err := Pack(ctx, []string{filepath.Join(dir, "pkg"), "my_functions.py"}, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash != b.Hash || !bytes.Equal(a.Zip, b.Zip) {
		t.Errorf("packing twice differs: %s vs %s", a.Hash, b.Hash)
	}
	if len(a.Hash) != 64 {
		t.Errorf("hash %q", a.Hash)
	}
	zr, err := zip.NewReader(bytes.NewReader(a.Zip), int64(len(a.Zip)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if !f.Modified.Equal(epoch) {
			t.Errorf("%s has timestamp %v", f.Name, f.Modified)
		}
	}
	// One changed byte changes the hash.
	write(t, dir, map[string]string{"pkg/core.py": "VALUE = 2\n"})
	c, err := Pack(ctx, []string{"my_functions.py", "pkg"}, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash == a.Hash {
		t.Error("changed content, same hash")
	}
}

func TestExclude(t *testing.T) {
	dir := tree(t)
	opt := Options{BaseDir: dir, Python: findPython(t)}
	for _, tc := range []struct {
		exclude []string
		want    []string
	}{
		{[]string{"pkg.sub", "pkg.tests", "*.csv"}, []string{"my_functions.py", "pkg/__init__.py", "pkg/core.py"}},
		{[]string{"pkg/sub/", "*_test.py", "tes?s", "pkg/data", "my_functions"}, []string{"pkg/__init__.py", "pkg/core.py"}},
		{[]string{"./my_functions.py", "pkg.core"}, []string{"pkg/__init__.py", "pkg/data/table.csv", "pkg/sub/__init__.py", "pkg/sub/deep.py",
			"pkg/sub/deep_test.py", "pkg/tests/test_core.py"}},
	} {
		a, err := Pack(context.Background(), []string{"my_functions.py", "pkg"}, tc.exclude, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.Files, tc.want) {
			t.Errorf("exclude %q: files = %q\nwant %q", tc.exclude, a.Files, tc.want)
		}
	}
	if _, err := Pack(context.Background(), []string{"my_functions.py"}, []string{"my_functions"}, opt); err == nil {
		t.Error("excluding everything succeeded")
	}
}

func TestModuleNames(t *testing.T) {
	dir := tree(t)
	opt := Options{BaseDir: dir, Python: findPython(t)}
	a, err := Pack(context.Background(), []string{"pkg.sub.deep", "my_functions", "pkg.core"}, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"my_functions.py", "pkg/__init__.py", "pkg/core.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"}
	if !reflect.DeepEqual(a.Files, want) {
		t.Errorf("files = %q\nwant %q", a.Files, want)
	}
	for _, bad := range [][]string{{"no_such_module_here"}, {"./missing.py"}, {"not a module"}, {"my_functions.py", "pkg/core.py", "other/core.py"}} {
		if bad[0] == "my_functions.py" {
			write(t, dir, map[string]string{"other/core.py": ""})
		}
		if _, err := Pack(context.Background(), bad, nil, opt); err == nil {
			t.Errorf("Pack(%q) succeeded", bad)
		}
	}
}

func TestUnpackAndCall(t *testing.T) {
	dir := tree(t)
	py := findPython(t)
	a, err := Pack(context.Background(), []string{"my_functions.py", "pkg"}, nil, Options{BaseDir: dir, Python: py})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, ok := Have(cache, a.Hash); ok {
		t.Fatal("Have before Unpack")
	}
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = Unpack(cache, a.Hash, a.Zip)
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != filepath.Join(cache, a.Hash) {
			t.Fatalf("Unpack %d = %q, %v", i, dirs[i], errs[i])
		}
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Errorf("cache holds %d entries, want only the unpacked dir", len(entries))
	}
	if got, ok := Have(cache, a.Hash); !ok || got != dirs[0] {
		t.Errorf("Have = %q, %v", got, ok)
	}
	b, err := os.ReadFile(filepath.Join(dirs[0], "pkg/sub/deep.py"))
	if err != nil || !strings.Contains(string(b), "VALUE + 1") {
		t.Fatalf("unpacked deep.py: %q, %v", b, err)
	}
	// The unpacked modules import in the Python host.
	h, err := pyhost.New(pyhost.Config{Python: py, ScriptDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct {
		ref  string
		args []wire.Value
		want string
	}{
		{"my_functions:add", []wire.Value{wire.Value("1"), wire.Value("2")}, "3"},
		{"pkg.sub.deep:f", nil, "2"},
	} {
		v, err := h.Call(context.Background(), &fn.Call{Ref: tc.ref, Args: tc.args, ModulesDir: dirs[0]})
		if err != nil || string(v) != tc.want {
			t.Errorf("%s from the unpacked dir = %s, %v; want %s", tc.ref, v, err, tc.want)
		}
	}
	// A wrong hash is refused, and leaves nothing behind.
	other := strings.Repeat("ab", 32)
	if _, err := Unpack(cache, other, a.Zip); err == nil || !strings.Contains(err.Error(), "hashes to") {
		t.Errorf("Unpack with a wrong hash: %v", err)
	}
	if _, ok := Have(cache, other); ok {
		t.Error("a mismatching archive was kept")
	}
	if _, err := Unpack(cache, "../../etc", a.Zip); err == nil {
		t.Error("Unpack accepted a path as hash")
	}
}

func zipOf(t testing.TB, entries map[string]os.FileMode) ([]byte, []File) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var files []File
	for name, mode := range entries {
		hdr := &zip.FileHeader{Name: name}
		hdr.SetMode(mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x"))
		files = append(files, File{Path: name, Data: []byte("x")})
	}
	zw.Close()
	return buf.Bytes(), files
}

func TestZipSlip(t *testing.T) {
	for _, name := range []string{"../evil.py", "/etc/evil.py", "a/../../evil.py", "a/./b.py", `a\..\evil.py`, "C:/evil.py", "a//b.py", ""} {
		z, files := zipOf(t, map[string]os.FileMode{name: 0o644})
		cache := t.TempDir()
		if _, err := Unpack(filepath.Join(cache, "c"), Hash(files), z); err == nil || !strings.Contains(err.Error(), "unsafe archive path") {
			t.Errorf("entry %q: %v, want an unsafe path error", name, err)
		}
		if _, err := os.Stat(filepath.Join(cache, "evil.py")); err == nil {
			t.Errorf("entry %q escaped", name)
		}
	}
	z, files := zipOf(t, map[string]os.FileMode{"link.py": os.ModeSymlink | 0o777})
	if _, err := Unpack(t.TempDir(), Hash(files), z); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("symlink entry: %v", err)
	}
	if _, err := Unpack(t.TempDir(), strings.Repeat("0", 64), []byte("not a zip")); err == nil {
		t.Error("garbage unpacked")
	}
}

func FuzzUnpack(f *testing.F) {
	z, _ := zipOf(f, map[string]os.FileMode{"a/b.py": 0o644})
	f.Add(z)
	f.Fuzz(func(t *testing.T, data []byte) {
		cache := t.TempDir()
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		var files []File
		for _, e := range zr.File {
			rc, err := e.Open()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			files = append(files, File{Path: e.Name, Exec: e.Mode()&0o111 != 0, Data: b})
		}
		dir, err := Unpack(filepath.Join(cache, "c"), Hash(files), data)
		if err != nil {
			return
		}
		if !strings.HasPrefix(dir, filepath.Join(cache, "c")) {
			t.Fatalf("unpacked to %s", dir)
		}
	})
}
