package datapath

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/skeinrun/skein/internal/retry"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/partition"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// Path is the storage side of a job's data path. It is safe for
// concurrent use.
type Path struct {
	res *storage.Resolver
	art *storage.Artifacts
	log *slog.Logger
	// MaxItems bounds the tasks one job's storage elements may expand to
	// (0: partition.DefaultMaxItems).
	MaxItems int

	moduleCache string   // where shipped modules are unpacked
	haveDirs    sync.Map // content hash -> haveDir (modules.go)
}

// New returns a Path reading inputs through res and keeping large values
// in art. log may be nil.
func New(res *storage.Resolver, art *storage.Artifacts, log *slog.Logger) *Path {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Path{res: res, art: art, log: log, moduleCache: defaultModuleCache()}
}

// FromConfig validates cfg and builds its resolver, artifacts and Path.
func FromConfig(cfg storage.Config, log *slog.Logger) (*Path, error) {
	res, err := storage.NewResolver(cfg, log)
	if err != nil {
		return nil, err
	}
	art, err := storage.NewArtifacts(res)
	if err != nil {
		return nil, err
	}
	return New(res, art, log), nil
}

// FromEnv is FromConfig of storage.DefaultConfig overlaid with the
// SKEIN_STORAGE_* environment. A bad variable or field is named in the
// error.
func FromEnv(log *slog.Logger) (*Path, error) {
	cfg, err := storage.DefaultConfig().FromEnv()
	if err != nil {
		return nil, err
	}
	return FromConfig(cfg, log)
}

// Resolver returns the path's resolver.
func (p *Path) Resolver() *storage.Resolver { return p.res }

// Artifacts returns the path's artifacts store.
func (p *Path) Artifacts() *storage.Artifacts { return p.art }

// CoordinatorHooks returns the coordinator's Expand, Spill and Ended
// hooks.
func (p *Path) CoordinatorHooks() coordinator.Hooks {
	return coordinator.Hooks{Expand: p.Expand, Spill: p.Spill, Ended: p.Ended, LoadInput: p.LoadInput}
}

// ConfigureRuntime sets the runtime's Prepare, Finish and Resolve; shipped
// modules are unpacked under cfg.ModuleCache when it is set (a directory
// the functions' user can read).
func (p *Path) ConfigureRuntime(cfg *runtime.Config) {
	if cfg.ModuleCache != "" {
		p.moduleCache = cfg.ModuleCache
	}
	cfg.Prepare, cfg.Finish, cfg.Resolve = p.Prepare, p.Finish, p.Resolve
}

// ---- coordinator ----

// Expand is coordinator.Hooks.Expand: it partitions the iterdata elements
// that name storage and leaves the others to the plain rules. It returns
// nil inputs (the plain rules for all) when no element names storage.
func (p *Path) Expand(ctx context.Context, spec *wire.JobSpec, elems []wire.Value, extra map[string]wire.Value) ([]coordinator.Input, []*wire.Object, error) {
	chunking := spec.ChunkSize != 0 || spec.ChunkN != 0
	if !chunking && !maybeStorage(elems) {
		return nil, nil, nil // the hot path: numbers and lists only
	}
	items, err := partition.Expand(ctx, p.res, elems, partition.Options{ChunkSize: spec.ChunkSize, ChunkN: spec.ChunkN, MaxItems: p.MaxItems})
	if err != nil {
		return nil, nil, err
	}
	ins := make([]coordinator.Input, len(items))
	objs := make([]*wire.Object, len(items))
	any := false
	for i, it := range items {
		if it.Obj == nil {
			in, err := coordinator.SplitElement(it.Value, extra)
			if err != nil {
				return nil, nil, fmt.Errorf("iterdata[%d]: %w", it.Source, err)
			}
			ins[i] = in
			continue
		}
		any = true
		objs[i] = it.Obj
		kw, err := mergeKwargs(it.Kwargs, extra)
		if err != nil {
			return nil, nil, fmt.Errorf("iterdata[%d] (%s): %w", it.Source, storage.Redact(it.Obj.URL), err)
		}
		ins[i] = coordinator.Input{Kwargs: kw}
	}
	if !any {
		return nil, nil, nil
	}
	p.log.Debug("iterdata expanded over storage", "job", spec.ID, "elements", len(elems), "tasks", len(items))
	return ins, objs, nil
}

// maybeStorage reports whether an element could name storage: a string
// or an object (anything else never does).
func maybeStorage(elems []wire.Value) bool {
	for _, e := range elems {
		if t := bytes.TrimSpace(e); len(t) > 0 && (t[0] == '"' || t[0] == '{') {
			return true
		}
	}
	return false
}

// mergeKwargs merges an object element's other keys with extra_params.
func mergeKwargs(kw, extra map[string]wire.Value) (map[string]wire.Value, error) {
	if _, ok := extra[partition.ObjKey]; ok {
		return nil, fmt.Errorf("extra_params: %q is reserved for the storage object of each task", partition.ObjKey)
	}
	if len(kw)+len(extra) == 0 {
		return nil, nil
	}
	out := make(map[string]wire.Value, len(kw)+len(extra))
	for k, v := range kw {
		out[k] = v
	}
	for k, v := range extra {
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("argument %q is set both by the element and by extra_params", k)
		}
		out[k] = v
	}
	return out, nil
}

// storedInput is the artifact a Task.InputRef names.
type storedInput struct {
	Args   []wire.Value          `json:"args,omitempty"`
	Kwargs map[string]wire.Value `json:"kwargs,omitempty"`
}

func inputSize(in coordinator.Input) int {
	n := 0
	for _, a := range in.Args {
		n += len(a) + 1
	}
	for k, v := range in.Kwargs {
		n += len(k) + len(v) + 4
	}
	return n
}

// Spill is coordinator.Hooks.Spill: inputs whose arguments exceed the
// inline limit are stored as in/<task> (ins[k] is task first+k's) and
// replaced by a reference.
func (p *Path) Spill(ctx context.Context, spec *wire.JobSpec, first int, ins []coordinator.Input) error {
	var big []int
	for i := range ins {
		if !p.art.Inline(inputSize(ins[i])) {
			big = append(big, i)
		}
	}
	if len(big) == 0 {
		return nil
	}
	err := parallel(ctx, big, func(ctx context.Context, i int) error {
		data, err := json.Marshal(storedInput{Args: ins[i].Args, Kwargs: ins[i].Kwargs})
		if err != nil {
			return fmt.Errorf("task %d: encoding its input: %w", i, err)
		}
		ref, err := p.art.Put(ctx, spec.ID, storage.InputName(first+i), data)
		if err != nil {
			return fmt.Errorf("task %d: %w", first+i, err)
		}
		ins[i] = coordinator.Input{Ref: ref}
		return nil
	})
	if err == nil {
		p.log.Debug("large task inputs stored by reference", "job", spec.ID, "inputs", len(big), "limit", p.art.InlineLimit())
	}
	return err
}

// parallel runs f over idx, 8 at a time, and joins the errors.
func parallel(ctx context.Context, idx []int, f func(context.Context, int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 8)
	for _, i := range idx {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cleanTimeout bounds the removal of one job's artifacts.
const cleanTimeout = 2 * time.Minute

// Ended is coordinator.Hooks.Ended: it removes the job's input the
// submitter stored (input/: no coordinator needs it once the job ended),
// and for a --clean job the job's stored task inputs, and, unless the job
// succeeded (its results are still to be fetched), every artifact of the
// job.
func (p *Path) Ended(ctx context.Context, spec *wire.JobSpec, st wire.JobStatus) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanTimeout)
	defer cancel()
	if inputStored(spec) {
		if err := p.art.CleanUnder(ctx, spec.ID, "input/"); err != nil {
			p.log.Warn("removing the job's stored input", "job", spec.ID, "err", err)
		}
	}
	if !spec.Clean {
		return
	}
	sub := ""
	if st.State == wire.StateDone {
		sub = "in/"
	}
	if err := p.art.CleanUnder(ctx, spec.ID, sub); err != nil {
		p.log.Warn("cleaning the job's artifacts", "job", spec.ID, "err", err)
	}
}

// Clean removes every artifact of job (the submitting process calls it
// for --clean jobs once it fetched the results).
func (p *Path) Clean(ctx context.Context, job string) error {
	return p.art.Clean(ctx, job)
}

// ---- runtime ----

// Prepare is runtime.Config.Prepare: it loads a stored input and opens
// the task's chunk as c.Obj (the runtime closes its Body after the call).
func (p *Path) Prepare(ctx context.Context, t *wire.Task, c *fn.Call) error {
	if err := p.prepareModules(ctx, t, c); err != nil {
		return err
	}
	if t.InputRef != "" {
		var data []byte
		err := p.patiently(ctx, "loading the task's input", func(ctx context.Context) (err error) {
			data, err = p.art.Get(ctx, t.InputRef)
			return err
		})
		if err != nil {
			return storageFailure("loading the task's input", err)
		}
		var in storedInput
		if err := json.Unmarshal(data, &in); err != nil {
			return &wire.TaskError{Kind: wire.ErrBadInput, Message: fmt.Sprintf("the task's stored input %s is not {\"args\":…,\"kwargs\":…}: %v", storage.Redact(t.InputRef), err)}
		}
		c.Args, c.Kwargs = in.Args, in.Kwargs
	}
	if t.Obj != nil {
		body, err := partition.OpenChunk(ctx, p.res, t.Obj)
		if err != nil {
			return storageFailure("opening "+storage.Redact(t.Obj.URL), err)
		}
		c.Obj = &fn.Object{Object: *t.Obj, Body: &chunkBody{rc: body}}
	}
	return nil
}

// chunkBody classifies the storage errors met while reading a chunk (the
// chunk is opened lazily: a missing object shows on the first Read), so
// that a function passing them on fails as a storage failure would.
type chunkBody struct{ rc io.ReadCloser }

func (b *chunkBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		var te *wire.TaskError
		if errors.As(storageFailure("", err), &te) && !te.Retryable {
			err = fn.BadInput(err)
		}
	}
	return n, err
}

func (b *chunkBody) Close() error { return b.rc.Close() }

// storageFailure classifies a storage error of a task: what will not
// change on a retry (no such object or bucket, access denied, a bad
// reference) is not retried.
func storageFailure(what string, err error) error {
	retry := !storage.Lasting(err)
	kind := wire.ErrInternal
	if !retry {
		kind = wire.ErrBadInput
	}
	return &wire.TaskError{Kind: kind, Message: what + ": " + err.Error(), Retryable: retry}
}

// patiently runs op, and again while it fails with an error that is not
// lasting, as storage.RideOut says. Failing at the first such error failed
// the task, and with it the job under the default of no retries.
func (p *Path) patiently(ctx context.Context, what string, op func(context.Context) error) error {
	octx, cancel := context.WithTimeout(ctx, storage.RideOut)
	defer cancel()
	var last error
	err := retry.Do(octx, retry.Policy{Initial: storage.RideOutFirst, Max: storage.RideOutMax,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			p.log.Warn("storage: "+what+" failed; trying again", "attempt", attempt, "wait", wait.Round(time.Millisecond), "err", err)
		}}, func() error {
		err := op(octx)
		if err != nil && storage.Lasting(err) {
			return retry.Permanent(err)
		}
		if err != nil && octx.Err() == nil {
			last = err
		}
		return err
	})
	if err != nil && ctx.Err() == nil && octx.Err() != nil && last != nil {
		return fmt.Errorf("%w (still failing after %v of tries)", last, storage.RideOut)
	}
	return err
}

// Finish is runtime.Config.Finish: a result above the inline limit is
// stored as out/<task>.<attempt> (reducers: red/<group>.<attempt>) and
// sent as Event.ResultRef.
func (p *Path) Finish(ctx context.Context, t *wire.Task, ev *wire.Event) error {
	if ev.Type != wire.EventDone || p.art.Inline(len(ev.Result)) {
		return nil
	}
	name := storage.ResultName(t.Index, t.Attempt)
	if t.Kind == wire.TaskReduce {
		name = fmt.Sprintf("red/%d.%d", t.Index, t.Attempt)
	}
	var ref string
	err := p.patiently(ctx, "storing a result", func(ctx context.Context) (err error) {
		ref, err = p.art.Put(ctx, t.Job, name, ev.Result)
		return err
	})
	if err != nil {
		return err
	}
	p.log.Debug("result stored by reference", "job", t.Job, "task", t.Index, "bytes", len(ev.Result), "ref", ref)
	ev.ResultRef, ev.Result = ref, nil
	return nil
}

// Resolve is runtime.Config.Resolve and client.Client.Resolve: it loads
// a value stored by reference.
func (p *Path) Resolve(ctx context.Context, ref string) (wire.Value, error) {
	var data []byte
	err := p.patiently(ctx, "loading a stored value", func(ctx context.Context) (err error) {
		data, err = p.art.Get(ctx, ref)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("stored value %s is not JSON", storage.Redact(ref))
	}
	return data, nil
}

// ---- job inputs in storage ----

// inputName is the artifact of a job's input stored by its submitter.
const inputName = "input/spec"

// StoreInput is client.Client.StoreInput: it stores a job's large data or
// iterdata as the job's artifact input/spec, read from r to its end. The
// upload rides out a storage outage (storage.Artifacts.PutReaderPatiently).
func (p *Path) StoreInput(ctx context.Context, job string, r io.Reader) (string, error) {
	return p.art.PutReaderPatiently(ctx, job, inputName, r, func(err error, wait time.Duration) {
		p.log.Warn("storage: storing the job's input failed; trying again", "job", job, "wait", wait.Round(time.Millisecond), "err", err)
	})
}

// LoadInput is coordinator.Hooks.LoadInput: it opens the input the
// submitter stored, which must be the job's own input artifact (a spec
// cannot make the coordinator read anything else). Opening and reading
// ride out a storage outage (storage.Patience): a read cut midway goes on
// from the byte reached.
func (p *Path) LoadInput(ctx context.Context, spec *wire.JobSpec, url string) (io.ReadCloser, error) {
	if want := p.art.JobURL(spec.ID) + inputName; url != want {
		return nil, fmt.Errorf("%w: the job's input %s is not its artifact %s", coordinator.ErrInvalid, storage.Redact(url), storage.Redact(want))
	}
	return p.art.OpenPatiently(ctx, url, func(err error, wait time.Duration) {
		p.log.Warn("storage: reading the job's stored input failed; trying again", "job", spec.ID, "wait", wait.Round(time.Millisecond), "err", err)
	})
}

// inputStored reports whether the submitter stored the job's input.
func inputStored(spec *wire.JobSpec) bool {
	return spec.DataRef != nil && spec.DataRef.URL != "" || spec.IterdataRef != nil && spec.IterdataRef.URL != ""
}
