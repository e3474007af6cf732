package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

//go:embed assets
var assets embed.FS

// Coordinator is what the dashboard reads and asks of a coordinator
// (*coordinator.Coordinator).
type Coordinator interface {
	Jobs() []coordinator.JobInfo
	Status(id string) (wire.JobStatus, error)
	Cancel(ctx context.Context, id string) (wire.JobStatus, error)
}

// Config configures a dashboard.
type Config struct {
	Coordinator Coordinator
	// Events is the bus stream the jobs' events are read from.
	Events bus.Stream
	Auth   Auth
	// Flush is how often a job page's stream sends what arrived.
	// Default 250ms.
	Flush  time.Duration
	Logger *slog.Logger
}

// Dashboard is the page's HTTP handler.
type Dashboard struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// New builds the dashboard. Mount it at / (it serves /, /jobs/{id},
// /login, /static/ and /api/).
func New(cfg Config) (*Dashboard, error) {
	if cfg.Coordinator == nil || cfg.Events == nil {
		return nil, errors.New("dashboard: a coordinator and an event stream are required")
	}
	if cfg.Flush <= 0 {
		cfg.Flush = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	static, _ := fs.Sub(assets, "assets")
	page, err := fs.ReadFile(static, "index.html")
	if err != nil {
		return nil, err
	}
	servePage := d.read(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	d.mux.Handle("GET /{$}", servePage)
	d.mux.Handle("GET /jobs/{id}", servePage)
	d.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	d.mux.HandleFunc("GET /login", d.login)
	d.mux.Handle("GET /api/me", d.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, cfg.Auth.rights(r)) }))
	d.mux.Handle("GET /api/jobs", d.read(d.jobs))
	d.mux.Handle("GET /api/jobs/{id}", d.read(d.job))
	d.mux.Handle("GET /api/jobs/{id}/events", d.read(d.events))
	d.mux.HandleFunc("POST /api/jobs/{id}/cancel", d.cancel)
	return d, nil
}

// ServeHTTP serves the page and its API. Every answer forbids framing
// and loading anything from elsewhere.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	d.mux.ServeHTTP(w, r)
}

// read serves f to callers who may read.
func (d *Dashboard) read(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.cfg.Auth.rights(r).Read {
			w.Header().Set("WWW-Authenticate", `Bearer realm="skein"`)
			http.Error(w, "this dashboard needs its token (open /login?token=…) or the reverse proxy's login", http.StatusUnauthorized)
			return
		}
		f(w, r)
	})
}

// login sets the token cookie when the token is right, then goes to the
// page.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if !d.cfg.Auth.tokenOK(tok) {
		http.Error(w, "wrong or missing token", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// JobView is a job in the list.
type JobView struct {
	ID             string          `json:"id"`
	State          wire.JobState   `json:"state"`
	Kind           wire.JobKind    `json:"kind"`
	Function       string          `json:"function"`
	ReduceFunction string          `json:"reduce_function,omitempty"`
	Pool           string          `json:"pool"`
	Total          int             `json:"total"`
	Done           int             `json:"done"`
	Failed         int             `json:"failed"`
	Running        int             `json:"running"`
	Retried        int             `json:"retried"`
	Submitted      int64           `json:"submitted_ms"` // unix ms, coordinator clock
	Ended          int64           `json:"ended_ms,omitempty"`
	ElapsedMS      int64           `json:"elapsed_ms"` // submitted to ended, or to now
	Rate           float64         `json:"rate"`       // tasks finished per second since the start
	Error          *wire.TaskError `json:"error,omitempty"`
	// FailedTask is the task whose failure ended the job; absent while
	// no task did (a job that failed of itself has an error but no
	// failed task).
	FailedTask *int `json:"failed_task,omitempty"`
}

func view(j coordinator.JobInfo, now time.Time) JobView {
	st := j.Status
	v := JobView{ID: st.ID, State: st.State, Kind: st.Kind, Function: j.Function, ReduceFunction: j.ReduceFunction, Pool: j.Pool,
		Total: st.Total, Done: st.Done, Failed: st.Failed, Running: st.Running, Retried: st.Retried,
		Submitted: st.Submitted / 1e6, Ended: st.Ended / 1e6, Error: st.Error}
	if st.Error != nil && st.FailedTask >= 0 {
		task := st.FailedTask
		v.FailedTask = &task
	}
	end := now.UnixNano()
	if st.Ended > 0 {
		end = st.Ended
	}
	if st.Submitted > 0 && end > st.Submitted {
		v.ElapsedMS = (end - st.Submitted) / 1e6
		if secs := float64(end-st.Submitted) / 1e9; secs > 0 {
			v.Rate = float64(st.Done+st.Failed) / secs
		}
	}
	return v
}

func (d *Dashboard) jobs(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	infos := d.cfg.Coordinator.Jobs()
	out := make([]JobView, 0, len(infos))
	for _, j := range infos {
		out = append(out, view(j, now))
	}
	// Running jobs first, then the newest.
	slices.SortFunc(out, func(a, b JobView) int {
		if ra, rb := !a.State.Terminal(), !b.State.Terminal(); ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		switch {
		case a.Submitted > b.Submitted:
			return -1
		case a.Submitted < b.Submitted:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	writeJSON(w, out)
}

// find returns the job's info.
func (d *Dashboard) find(id string) (coordinator.JobInfo, bool) {
	for _, j := range d.cfg.Coordinator.Jobs() {
		if j.Status.ID == id {
			return j, true
		}
	}
	return coordinator.JobInfo{}, false
}

func (d *Dashboard) job(w http.ResponseWriter, r *http.Request) {
	j, ok := d.find(r.PathValue("id"))
	if !ok {
		http.Error(w, "this coordinator holds no job "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	writeJSON(w, view(j, time.Now()))
}

func (d *Dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	rt := d.cfg.Auth.rights(r)
	if !rt.Cancel {
		http.Error(w, "cancelling needs the dashboard's token or a user allowed to cancel", http.StatusForbidden)
		return
	}
	if r.Header.Get("X-Skein-Request") == "" {
		http.Error(w, "missing X-Skein-Request header", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	st, err := d.cfg.Coordinator.Cancel(ctx, id)
	if errors.Is(err, coordinator.ErrUnknownJob) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	d.log.Info("job cancelled from the dashboard", "job", id, "user", rt.User)
	writeJSON(w, st)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
