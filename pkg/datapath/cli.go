package datapath

import (
	"context"
	"log/slog"
	"os"

	"github.com/skeinrun/skein/pkg/cli"
	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/runtime"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// ConfigError is a bad storage configuration. It counts as bad input
// (errors.Is(err, coordinator.ErrInvalid)), so submit exits with 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string {
	return "storage configuration (SKEIN_STORAGE_* environment): " + e.Err.Error()
}
func (e *ConfigError) Unwrap() error        { return e.Err }
func (e *ConfigError) Is(target error) bool { return target == coordinator.ErrInvalid }

func fromEnv(log *slog.Logger) (*Path, error) {
	p, err := FromEnv(log)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	return p, nil
}

// Extend is the submit program's cli.Env.Extend: it builds the Path from
// the environment and wires it into the embedded cluster (coordinator
// hooks, runtime Prepare/Finish/Resolve), the client (Resolve) and the
// --clean cleanup.
func Extend(ctx context.Context, o *cli.Options) error {
	var log *slog.Logger
	if o.Embedded != nil {
		log = o.Embedded.Logger
	}
	p, err := fromEnv(log)
	if err != nil {
		return err
	}
	if err := p.ShipModules(ctx, &o.Spec); err != nil {
		return err
	}
	if o.Embedded != nil {
		p.WireCoordinator(&o.Embedded.Coordinator)
		p.ConfigureRuntime(&o.Embedded.Runtime)
	}
	o.ConfigureRuntime = p.ConfigureRuntime
	if o.Client == nil {
		o.Client = &client.Client{} // carries Resolve to the client submit builds
	}
	o.Client.Resolve = p.Resolve
	if os.Getenv(storage.EnvArtifacts) != "" {
		// Storage is configured (not only the embedded default): large
		// inputs go there rather than in chunks on the job log.
		o.Client.StoreInput = p.StoreInput
	}
	o.Cleanup = p.Clean
	return nil
}

// WireCoordinator sets cfg's Expand, Spill and Ended hooks (an Ended hook
// already set still runs, first).
func (p *Path) WireCoordinator(cfg *coordinator.Config) {
	h := p.CoordinatorHooks()
	if prev := cfg.Hooks.Ended; prev != nil {
		ours := h.Ended
		h.Ended = func(ctx context.Context, spec *wire.JobSpec, st wire.JobStatus) {
			prev(ctx, spec, st)
			ours(ctx, spec, st)
		}
	}
	cfg.Hooks.Expand, cfg.Hooks.Spill, cfg.Hooks.Ended, cfg.Hooks.LoadInput = h.Expand, h.Spill, h.Ended, h.LoadInput
}

// ServiceHooks are the coordinator and runtime programs' hooks: each
// builds its Path from the environment.
func ServiceHooks() cli.ServiceHooks {
	return cli.ServiceHooks{
		Coordinator: func(ctx context.Context, cfg *coordinator.Config) error {
			p, err := fromEnv(cfg.Logger)
			if err != nil {
				return err
			}
			p.WireCoordinator(cfg)
			return nil
		},
		Runtime: func(ctx context.Context, cfg *runtime.Config) error {
			p, err := fromEnv(cfg.Logger)
			if err != nil {
				return err
			}
			p.ConfigureRuntime(cfg)
			return nil
		},
	}
}
