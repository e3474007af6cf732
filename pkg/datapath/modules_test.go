package datapath_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/datapath"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/wire"
)

// A task's shipped modules are unpacked once; the directory is then
// trusted for a while without a look on disk a task, and unpacked again
// when it was removed meanwhile (a cache cleaner).
func TestModulesDirTrustedThenLookedAgain(t *testing.T) {
	defer datapath.SetHaveFor(50 * time.Millisecond)()
	p, dir := newPath(t)
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(dir, "m.py"), []byte("def f(x):\n    return x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &wire.JobSpec{IncludeModules: []string{filepath.Join(dir, "m.py")}}
	if err := p.ShipModules(ctx, spec); err != nil {
		t.Fatal(err)
	}
	p.ConfigureRuntime(&runtime.Config{ModuleCache: t.TempDir()})
	task := &wire.Task{Modules: spec.Modules}
	prepare := func() string {
		t.Helper()
		var c fn.Call
		if err := p.Prepare(ctx, task, &c); err != nil {
			t.Fatal(err)
		}
		return c.ModulesDir
	}
	mods := prepare()
	if _, err := os.Stat(filepath.Join(mods, "m.py")); err != nil {
		t.Fatalf("modules not unpacked: %v", err)
	}
	if err := os.RemoveAll(mods); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := prepare(); got != mods {
		t.Fatalf("modules dir %s, then %s", mods, got)
	}
	if time.Since(start) < 50*time.Millisecond {
		if _, err := os.Stat(mods); err == nil {
			t.Fatalf("the modules dir was looked for again at once (trusted for 50 ms)")
		}
	}
	for time.Since(start) < 60*time.Millisecond {
		time.Sleep(5 * time.Millisecond) // the trust ends with time, by definition
	}
	if got := prepare(); got != mods {
		t.Fatalf("modules dir %s, then %s", mods, got)
	}
	if _, err := os.Stat(filepath.Join(mods, "m.py")); err != nil {
		t.Fatalf("a removed modules dir was not unpacked again: %v", err)
	}
}
