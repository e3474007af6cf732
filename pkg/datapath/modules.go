package datapath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/modpack"
	"github.com/skeinrun/skein/pkg/wire"
)

// modulesJob is the artifacts "job" under which shipped code lives: one
// zip per content hash, shared by every job that ships the same code.
const modulesJob = "modules"

// ShipModules packs spec.IncludeModules (minus ExcludeModules), uploads
// the zip once per content hash, and sets spec.Modules to its reference.
func (p *Path) ShipModules(ctx context.Context, spec *wire.JobSpec) error {
	if len(spec.IncludeModules) == 0 {
		return nil
	}
	a, err := modpack.Pack(ctx, spec.IncludeModules, spec.ExcludeModules, modpack.Options{Python: os.Getenv("SKEIN_PYTHON")})
	if err != nil {
		return &InputError{Err: fmt.Errorf("--include-modules: %w", err)}
	}
	name := a.Hash + ".zip"
	ref := p.art.JobURL(modulesJob) + name
	if rc, err := p.art.Open(ctx, ref); err == nil {
		rc.Close() // uploaded before: the hash says it is the same code
	} else {
		if ref, err = p.art.Put(ctx, modulesJob, name, a.Zip); err != nil {
			return fmt.Errorf("uploading the shipped modules: %w", err)
		}
	}
	spec.Modules = ref
	return nil
}

// modulesDir unpacks a task's shipped modules once per hash and returns
// the directory to put on the import path.
//
// A directory found (or unpacked) is trusted for haveFor without looking
// again: a stat a task cost a no-op Python call about 3 µs of the
// runtime's CPU. One removed meanwhile (a cache cleaner) is unpacked again
// at the next look.
func (p *Path) modulesDir(ctx context.Context, ref string) (string, error) {
	hash := strings.TrimSuffix(path.Base(ref), ".zip")
	cache := p.moduleCache
	if v, ok := p.haveDirs.Load(hash); ok {
		if h := v.(haveDir); h.cache == cache && time.Since(h.at) < haveFor {
			return h.dir, nil
		}
	}
	if dir, ok := modpack.Have(cache, hash); ok {
		p.haveDirs.Store(hash, haveDir{dir: dir, cache: cache, at: time.Now()})
		return dir, nil
	}
	data, err := p.art.Get(ctx, ref)
	if err != nil {
		return "", storageFailure("loading the shipped modules", err)
	}
	dir, err := modpack.Unpack(cache, hash, data)
	if err != nil {
		return "", &wire.TaskError{Kind: wire.ErrInternal, Message: "unpacking the shipped modules: " + err.Error()}
	}
	p.haveDirs.Store(hash, haveDir{dir: dir, cache: cache, at: time.Now()})
	return dir, nil
}

// haveFor is how long a modules directory seen on disk is trusted.
var haveFor = time.Second

// haveDir is a modules directory seen on disk, and when.
type haveDir struct {
	dir, cache string
	at         time.Time
}

func defaultModuleCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "skein", "modules")
	}
	return filepath.Join(os.TempDir(), "skein-modules")
}

// prepareModules sets c.ModulesDir for a task that ships code.
func (p *Path) prepareModules(ctx context.Context, t *wire.Task, c *fn.Call) error {
	if t.Modules == "" {
		return nil
	}
	dir, err := p.modulesDir(ctx, t.Modules)
	if err != nil {
		var te *wire.TaskError
		if errors.As(err, &te) {
			return te
		}
		return err
	}
	c.ModulesDir = dir
	return nil
}

// InputError is bad input from the command line (exit 2).
type InputError struct{ Err error }

func (e *InputError) Error() string        { return e.Err.Error() }
func (e *InputError) Unwrap() error        { return e.Err }
func (e *InputError) Is(target error) bool { return target == coordinator.ErrInvalid }
