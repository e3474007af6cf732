package action

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Environment the actionloop proxy gives the program it starts as exec
// (apache/openwhisk-runtime-go, openwhisk/actionProxy.go SetEnv): it
// always sets __OW_PROXY_VERSION, sets __OW_WAIT_FOR_ACK when the runtime
// image asks for an acknowledgement (OW_WAIT_FOR_ACK), and passes every
// __OW_* variable of its own environment and the /init env.
const (
	EnvProxyVersion = "__OW_PROXY_VERSION"
	EnvWaitForAck   = "__OW_WAIT_FOR_ACK"
)

// LoopFD is the descriptor the proxy reads acknowledgement and results
// from: the first of cmd.ExtraFiles, so 3 (openwhisk/executor.go).
const LoopFD = 3

// StartedByProxy tells whether this process looks started by an
// actionloop proxy as its exec: __OW_PROXY_VERSION is set and descriptor
// 3 is open.
func StartedByProxy(getenv func(string) string) bool {
	if getenv(EnvProxyVersion) == "" {
		return false
	}
	return loopFDOpen() == nil
}

// loopFDOpen checks that descriptor 3 is open and is a pipe (the
// proxy's os.Pipe) or a socket: not a file the Go runtime opened for
// itself, which takes the lowest free number, 3, when the parent left it
// closed (it reads the cgroup CPU quota at start).
func loopFDOpen() error {
	var st syscall.Stat_t
	if err := syscall.Fstat(LoopFD, &st); err != nil {
		return err
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK:
		return nil
	}
	return fmt.Errorf("descriptor 3 is not a pipe or socket (mode %#o)", st.Mode)
}

// LoopConfig configures Loop.
type LoopConfig struct {
	Logger *slog.Logger
	// Getenv reads the environment (default os.Getenv): __OW_WAIT_FOR_ACK
	// and __OW_API_HOST.
	Getenv func(string) string
	// Margin is how long before an activation's deadline its result is
	// written at the latest (the executor's context ends then): the
	// invoker stops waiting at the deadline itself. Default
	// min(1s, a tenth of the time left).
	Margin time.Duration
}

// Loop speaks the actionloop protocol of apache/openwhisk-runtime-go on
// in (the process's stdin) and out (descriptor 3), as the proxy's
// executor drives its exec (openwhisk/executor.go, runHandler.go):
//
//   - When __OW_WAIT_FOR_ACK is set, the proxy waits for one line
//     {"ok":true} on out before it answers /init; Loop writes it first.
//     Without it the proxy reads nothing until the first activation, so
//     no acknowledgement may be written.
//   - Each activation is one line on in: the /run body the invoker sent,
//     newlines removed: {"value":{...params},"namespace","action_name",
//     "activation_id","transaction_id","deadline","api_key",...}. exec runs
//     with value as params, a context that ends Margin before deadline and
//     the activation context ([FromContext]).
//   - The result is one line on out: exec's JSON object, or
//     {"error":"..."} (OpenWhisk records an application error) when exec
//     fails or the line is not a /run body with a value.
//   - Logs go to stdout and stderr, which the proxy hands to the exec as
//     they are; after reading the result the proxy itself writes the end
//     marker (EndMarker) on both, so Loop never writes it (that would end
//     the activation's logs twice). Everything logged before the result
//     line belongs to the activation.
//
// Loop returns nil when in ends (the proxy stopped the action) or ctx is
// done, and an error when out cannot be written.
func Loop(ctx context.Context, in io.Reader, out io.Writer, exec Executor, cfg LoopConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if getenv(EnvWaitForAck) != "" {
		if _, err := io.WriteString(out, "{\"ok\":true}\n"); err != nil {
			return fmt.Errorf("action: acknowledgement: %w", err)
		}
	}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(in, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && (err == nil || err == io.EOF) {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()
	log.Info("actionloop ready", "ack", getenv(EnvWaitForAck) != "")
	for {
		var line []byte
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if err != nil {
				log.Warn("actionloop: reading activations", "err", err)
			}
			return nil
		case line = <-lines:
		}
		res := runLine(ctx, line, exec, getenv("__OW_API_HOST"), cfg.Margin, log)
		if _, err := out.Write(append(res, '\n')); err != nil {
			return fmt.Errorf("action: writing a result: %w", err)
		}
	}
}

// runLine runs one activation line and returns its result line (no
// newline in it: encoding/json escapes them in strings).
func runLine(ctx context.Context, line []byte, exec Executor, apiHost string, margin time.Duration, log *slog.Logger) []byte {
	if len(line) > MaxBody {
		return errorLine(fmt.Sprintf("run: the activation is %d bytes, more than %d", len(line), MaxBody))
	}
	params, act, err := parseRun(line, apiHost)
	if err != nil {
		log.Warn("activation refused", "err", err)
		return errorLine(err.Error())
	}
	if !act.Deadline.IsZero() {
		m := margin
		if m <= 0 {
			m = min(time.Second, time.Until(act.Deadline)/10)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, act.Deadline.Add(-m))
		defer cancel()
	}
	ctx = context.WithValue(ctx, activationKey{}, act)
	start := time.Now()
	res, err := call(ctx, exec, params)
	if err != nil {
		log.Warn("activation failed", "activation", act.ActivationID, "action", act.ActionName,
			"duration", time.Since(start), "err", err)
		return errorLine(err.Error())
	}
	b, err := json.Marshal(res)
	if err != nil {
		return errorLine("the action's result is not JSON: " + err.Error())
	}
	log.Info("activation done", "activation", act.ActivationID, "action", act.ActionName, "duration", time.Since(start))
	return b
}

func errorLine(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

// LoopOutput opens descriptor 3 for Loop's results.
func LoopOutput() (*os.File, error) {
	if err := loopFDOpen(); err != nil {
		return nil, fmt.Errorf("action: descriptor 3: %w: the actionloop proxy passes its result pipe there", err)
	}
	return os.NewFile(LoopFD, "actionloop-out"), nil
}
