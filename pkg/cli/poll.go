package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/pollmon"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/telemetry"
	"github.com/skeinrun/skein/pkg/wire"
)

// pollStorage is where poll-mode status objects live: the artifacts store
// of the SKEIN_STORAGE_* configuration, under <artifacts prefix><job>/status/.
// It is opened on first use, so that programs that never see a poll-mode
// job never touch storage.
type pollStorage struct {
	log *slog.Logger

	once   sync.Once
	store  pollmon.Store
	bucket string
	prefix string
	err    error
}

func newPollStorage(log *slog.Logger) *pollStorage { return &pollStorage{log: log} }

func (p *pollStorage) open(ctx context.Context) error {
	p.once.Do(func() {
		cfg, err := storage.DefaultConfig().FromEnv()
		if err != nil {
			p.err = fmt.Errorf("poll monitor: storage config: %w", err)
			return
		}
		r, err := storage.NewResolver(cfg, p.log)
		if err != nil {
			p.err = fmt.Errorf("poll monitor: %w", err)
			return
		}
		u, s, err := r.Parse(cfg.ArtifactsURL)
		if err != nil {
			p.err = fmt.Errorf("poll monitor: artifacts URL: %w", err)
			return
		}
		if _, err := s.List(ctx, u.Bucket, u.Key+".skein-probe/"); errors.Is(err, storage.ErrNoBucket) && cfg.CreateArtifactsBucket {
			if bm, ok := s.(storage.BucketMaker); ok {
				if err := bm.MakeBucket(ctx, u.Bucket); err != nil {
					p.err = fmt.Errorf("poll monitor: making bucket %s: %w", u.Bucket, err)
					return
				}
			}
		}
		p.store, p.bucket, p.prefix = pollmon.FromStore(s), u.Bucket, u.Key
	})
	return p.err
}

// watch is the coordinator's poll hook (coordinator.PollFunc).
func (p *pollStorage) watch(ctx context.Context, job string, total int, interval time.Duration, seen func(int, time.Time)) error {
	if err := p.open(ctx); err != nil {
		return err
	}
	m, err := pollmon.New(p.store, pollmon.Config{Bucket: p.bucket, Prefix: p.prefix, Interval: interval}, p.log)
	if err != nil {
		return err
	}
	err = m.Watch(ctx, job, total, func(c pollmon.Completion) { seen(c.Task, c.Noticed) })
	st := m.Stats()
	p.log.Info("poll monitor done", "job", job, "lists", st.Lists, "keys_listed", st.Keys)
	return err
}

// writeStatus is the runtime's poll hook (runtime.Config.PollStatus).
func (p *pollStorage) writeStatus(ctx context.Context, t *wire.Task, ev *wire.Event) error {
	if err := p.open(ctx); err != nil {
		return err
	}
	return pollmon.WriteStatus(ctx, p.store, p.bucket, p.prefix, pollmon.Status{
		Job: t.Job, Task: t.Index, Attempt: t.Attempt, State: string(ev.Type),
		Worker: ev.Worker, Started: ev.Started, Finished: ev.Finished,
	})
}

// embeddedPoll sets up poll mode in an embedded installation.
func embeddedPoll(cfg *embedded.Config, log *slog.Logger) {
	p := newPollStorage(log)
	cfg.Coordinator.Hooks.Poll = p.watch
	cfg.Runtime.PollStatus = p.writeStatus
}

// submitSpan starts submit's own span when telemetry is on and puts its
// context into the job spec, so that the coordinator's job span and the
// runtimes' task spans join one trace under it.
func submitSpan(ctx context.Context, tel *telemetry.Telemetry, s *wire.JobSpec) (context.Context, trace.Span) {
	if !tel.Enabled() {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	ctx, span := tel.Tracer().Start(ctx, "skein.submit", trace.WithAttributes(telemetry.AttrJobKind.String(string(s.Kind))))
	s.Trace = telemetry.Inject(ctx)
	return ctx, span
}
