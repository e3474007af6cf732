package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/pyhost"
)

// Serve runs submit's client mode: one process, one open bus connection,
// many jobs. A program that submits many small jobs (the skeinrun Python
// executor) starts it once instead of one submit process per job, so that
// a job costs a request on an open connection, not a process start and a
// bus handshake.
//
//	skeinrun-submit __serve --bus URL [--config FILE] [bus credential flags]
//	skeinrun-submit __serve --embedded [--workers N] [--hosts …]
//
// It is the Python package's binary's mode (python/cmd/skeinrun-submit),
// not a command of the submit program: its protocol is the executor's,
// documented in docs/python.md, and may change with it.
//
// It reads requests as JSON lines on stdin and writes replies as JSON
// lines on stdout:
//
//	→ {"id":"J1","args":["map","--function","py:@f.pkl","--iterdata-from","it.json","--stream"]}
//	← {"id":"J1","line":…}          each line the job's submit would print on stdout
//	← {"id":"J1","exit":0,"stderr":"…","job":"…"}   its exit code, stderr and Skein job id, last
//	→ {"id":"J1","cancel":true}      cancels J1 on the coordinator (exit 6)
//
// args are a call, map, mapreduce or plot command line as submit takes
// it (plot: the timeline of a job it ran, later, so that a job need not
// write one with --plot); it runs on serve's connection whatever bus its
// flags name. With --embedded, serve runs an installation of its own in
// its process (what submit runs for one job without a bus) and every job
// on it, so that its Python interpreters and its bus stay up between
// jobs. Jobs run concurrently; replies of different jobs interleave, each line whole.
// The first reply is {"ready":true} once the bus is open, or
// {"error":"…"} before serve exits with submit's exit code for it. When
// stdin ends (the program closed it, or died) or serve gets SIGINT or
// SIGTERM, the jobs still running are cancelled on the coordinator and
// serve exits once they have ended (at most serveDrain later).
func Serve(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	o := &Options{}
	fs := newFlagSet("serve", env)
	commonFlags(fs, o)
	var (
		embed bool
		ff    funcFlags
	)
	fs.BoolVar(&embed, "embedded", false, "run an installation in this process (NATS server, coordinator, runtime), kept warm for every job, instead of joining a bus")
	fs.IntVar(&o.Workers, "workers", 0, "with --embedded: worker slots (default: one per core)")
	ff.register(fs, "submit", DefaultEmbeddedHosts+" with --embedded", false)
	out := &serveOut{w: bufio.NewWriter(env.Stdout)}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, env)
			return ExitOK
		}
		return out.fail(usagef("%v", err), env)
	}
	if fs.NArg() > 0 {
		return out.fail(usagef("unexpected argument %q (flags only)", fs.Arg(0)), env)
	}
	if embed && o.Bus != "" {
		return out.fail(usagef("--embedded runs its own installation: it takes no --bus"), env)
	}
	fc, err := loadConfig(o.Config, env.Getenv)
	if err != nil {
		return out.fail(err, env)
	}
	if !embed {
		var pool string
		fc.apply(&o.Bus, &pool, env.Getenv)
		if o.Bus == "" {
			return out.fail(usagef("serve needs a bus (--bus or SKEIN_BUS) or --embedded"), env)
		}
	}
	log, err := o.Logging.Logger(env.Stderr)
	if err != nil {
		return out.fail(usagef("%v", err), env)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var b bus.Bus
	if embed {
		cl, closeHosts, err := serveEmbedded(ctx, o, &ff, fc, env, log)
		if err != nil {
			return out.fail(err, env)
		}
		defer closeHosts()
		defer cl.Close()
		b = cl.Client.Bus()
		// The jobs' flags need a bus to take submit's bus path; they run
		// on env.Bus, this installation's in-process connection.
		o.Bus = embeddedServeBus
	} else {
		if b, err = o.openBus(ctx, env, log); err != nil {
			return out.fail(err, env)
		}
		defer b.Close()
	}

	s := &server{env: env, out: out, bus: o.Bus, jobs: map[string]*serveJob{}}
	s.env.Bus = b
	s.env.Signals = false
	out.send(map[string]any{"ready": true})

	lines := make(chan []byte)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(env.Stdin, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var sig chan os.Signal // nil (never ready) unless Signals
	if env.Signals {
		sig = make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
	}
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break loop
			}
			s.handle(ctx, line)
		case <-sig:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	s.drain()
	return ExitOK
}

// embeddedServeBus stands for serve --embedded's in-process bus in the
// jobs' flags.
const embeddedServeBus = "nats://serve-embedded.invalid:4222"

// serveEmbedded starts serve --embedded's installation: what submit
// starts for one job without a bus, here for all of them, so that its
// Python interpreters and its bus stay up between jobs.
func serveEmbedded(ctx context.Context, o *Options, ff *funcFlags, fc *fileConfig, env Env, log *slog.Logger) (*embedded.Cluster, func(), error) {
	fo, err := ff.resolve(fc, env.Getenv, DefaultEmbeddedHosts)
	if err != nil {
		return nil, nil, err
	}
	o.Embedded = &embedded.Config{Workers: o.Workers, Logger: log}
	if env.Extend != nil {
		if err := env.Extend(ctx, o); err != nil {
			return nil, nil, err
		}
	}
	closeHosts := func() {}
	if o.Embedded.Runtime.Hosts == nil {
		hosts, err := openHosts(fo, env.Getenv, log)
		if err != nil {
			return nil, nil, err
		}
		closeHosts = func() { hosts.Close() }
		hosts.configure(&o.Embedded.Runtime)
	}
	cl, err := embedded.Start(ctx, *o.Embedded)
	if err != nil {
		closeHosts()
		return nil, nil, err
	}
	// Start the slots' Python interpreters now, while the program
	// prepares its first job, rather than at that job's first calls.
	if py, ok := o.Embedded.Runtime.Hosts["py"].(*pyhost.Host); ok {
		n := o.Embedded.Workers
		if n <= 0 {
			n = goruntime.NumCPU()
		}
		started := make(chan struct{})
		go func() { defer close(started); py.Prestart(ctx, n) }()
		closeAll := closeHosts
		closeHosts = func() { closeAll(); <-started }
	}
	return cl, closeHosts, nil
}

// serveDrain bounds the wait for running jobs after stdin ends.
const serveDrain = 15 * time.Second

type server struct {
	env Env
	out *serveOut
	bus string // the URL of env.Bus
	mu  sync.Mutex
	wg  sync.WaitGroup
	// jobs are the running jobs by request id.
	jobs map[string]*serveJob
}

type serveJob struct {
	interrupt chan struct{}
	once      sync.Once
	cancel    context.CancelFunc
}

func (j *serveJob) interruptOnce() { j.once.Do(func() { close(j.interrupt) }) }

type serveRequest struct {
	ID     string   `json:"id"`
	Args   []string `json:"args"`
	Cancel bool     `json:"cancel"`
}

func (s *server) handle(ctx context.Context, line []byte) {
	var req serveRequest
	if err := json.Unmarshal(line, &req); err != nil || req.ID == "" {
		s.out.send(map[string]any{"error": fmt.Sprintf("bad request %.200q: want {\"id\":…,\"args\":[…]} or {\"id\":…,\"cancel\":true}", line)})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Cancel {
		if j := s.jobs[req.ID]; j != nil {
			j.interruptOnce()
		}
		return
	}
	if _, dup := s.jobs[req.ID]; dup {
		s.out.send(map[string]any{"id": req.ID, "exit": ExitUsage, "stderr": "submit serve: request id " + req.ID + " is already running\n"})
		return
	}
	if len(req.Args) == 0 {
		s.out.send(map[string]any{"id": req.ID, "exit": ExitUsage, "stderr": "submit serve: empty args\n"})
		return
	}
	switch req.Args[0] {
	case "call", "map", "mapreduce", "plot":
	default:
		s.out.send(map[string]any{"id": req.ID, "exit": ExitUsage, "stderr": fmt.Sprintf("submit serve: command %q: serve runs call, map, mapreduce and plot\n", req.Args[0])})
		return
	}
	jctx, cancel := context.WithCancel(ctx)
	j := &serveJob{interrupt: make(chan struct{}), cancel: cancel}
	s.jobs[req.ID] = j
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		stdout := &lineSink{id: req.ID, out: s.out}
		stderr := &lockedBuffer{}
		env := s.env
		env.Stdin = strings.NewReader("")
		env.Stdout, env.Stderr = stdout, stderr
		env.Interrupt = j.interrupt
		var job string // the Skein job id, once submitted
		env.Submitted = func(id string) { job = id }
		// Last wins: the job runs on serve's bus whatever its flags say.
		args := append(slices.Clone(req.Args), "--bus="+s.bus)
		code := Submit(jctx, args, env)
		stdout.flush()
		s.mu.Lock()
		delete(s.jobs, req.ID)
		s.mu.Unlock()
		reply := map[string]any{"id": req.ID, "exit": code, "stderr": stderr.String()}
		if job != "" {
			reply["job"] = job
		}
		s.out.send(reply)
	}()
}

// drain cancels the running jobs on the coordinator and waits for them to
// end, then for at most serveDrain more before it abandons them.
func (s *server) drain() {
	s.mu.Lock()
	for _, j := range s.jobs {
		j.interruptOnce()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(serveDrain)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.mu.Lock()
		for _, j := range s.jobs {
			j.cancel()
		}
		s.mu.Unlock()
		<-done
	}
}

// serveOut writes whole JSON lines, one writer at a time.
type serveOut struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *serveOut) send(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.put(v)
	o.w.Flush()
}

// put writes one line; the caller holds mu and flushes.
func (o *serveOut) put(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"error": "encoding a reply: " + err.Error()})
	}
	o.w.Write(b)
	o.w.WriteByte('\n')
}

// fail reports err as serve's first reply and on stderr, and returns the
// exit code submit gives it.
func (o *serveOut) fail(err error, env Env) int {
	code := report(err, env)
	o.send(map[string]any{"error": err.Error(), "exit": code})
	return code
}

// lineSink turns one job's stdout into {"id":…,"line":…} replies.
type lineSink struct {
	id  string
	out *serveOut
	mu  sync.Mutex
	buf []byte
}

func (l *lineSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	i := bytes.LastIndexByte(l.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	// Every whole line of this write, then one flush: a burst of results
	// is one write to the reader.
	l.emit(l.buf[:i])
	l.buf = l.buf[i+1:]
	if len(l.buf) == 0 {
		l.buf = nil // do not keep a large result's buffer
	}
	return len(p), nil
}

func (l *lineSink) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emit(l.buf)
	l.buf = nil
}

// emit sends each non-empty line of text.
func (l *lineSink) emit(text []byte) {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	sent := false
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var v any = string(line)
		if json.Valid(line) {
			v = json.RawMessage(line)
		}
		l.out.put(struct {
			ID   string `json:"id"`
			Line any    `json:"line"`
		}{l.id, v})
		sent = true
	}
	if sent {
		l.out.w.Flush()
	}
}

// lockedBuffer is a job's stderr: the job and its interrupt goroutine
// write it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)
