// Command testaction is a runtime stand-in for tests of the OpenWhisk
// backend: it serves the action proxy protocol (package action) with an
// executor that drains tasks from a NATS JetStream work queue the way the
// runtime's drain mode does, and publishes one result per task on the bus.
//
// Bus: SKEIN_BUS_URL (an /init env, i.e. an init parameter of the action).
// Tasks: stream TASKS, subject tasks.<pool>, body {"job","i","x"}.
// Results: subject results.<job> (stream RESULTS), body {"i","y":x*x,"act"}.
// Params: job, pool, max_tasks, idle_ms (see backend/openwhisk); "fail"
// makes the activation fail; "echo" returns it with the SKEIN_TEST_SECRET
// env; "sleep_ms" sleeps.
//
// It exists until the real runtime binary serves action mode; the lead
// replaces it with cmd/runtime in action mode.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/skeinrun/skein/pkg/action"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := action.Serve(ctx, action.Addr(), drain, log); err != nil {
		log.Error("testaction", "err", err)
		os.Exit(1)
	}
}

func num(params map[string]any, key string, def float64) float64 {
	if v, ok := params[key].(float64); ok {
		return v
	}
	return def
}

func drain(ctx context.Context, params map[string]any) (map[string]any, error) {
	if params["fail"] == true {
		return nil, errors.New("failing on request")
	}
	if d, ok := params["sleep_ms"].(float64); ok {
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return map[string]any{"slept_ms": d}, nil
	}
	if e, ok := params["echo"]; ok {
		act, _ := action.FromContext(ctx)
		return map[string]any{"echo": e, "secret_env": os.Getenv("SKEIN_TEST_SECRET"),
			"activation": act.ActivationID, "has_deadline": !act.Deadline.IsZero()}, nil
	}
	job, _ := params["job"].(string)
	pool, _ := params["pool"].(string)
	if job == "" || pool == "" {
		return nil, fmt.Errorf("params job %q and pool %q: both are required", job, pool)
	}
	maxTasks := int(num(params, "max_tasks", 1))
	idle := time.Duration(num(params, "idle_ms", 500)) * time.Millisecond
	url := os.Getenv("SKEIN_BUS_URL")
	if url == "" {
		return nil, errors.New("SKEIN_BUS_URL is not set (an init parameter of the action)")
	}
	nc, err := nats.Connect(url, nats.Name("testaction"))
	if err != nil {
		return nil, fmt.Errorf("connect to the bus: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "TASKS", jetstream.ConsumerConfig{
		Durable: "drain-" + pool, FilterSubject: "tasks." + pool, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer for pool %s: %w", pool, err)
	}
	act, _ := action.FromContext(ctx)
	done := 0
	for done < maxTasks && ctx.Err() == nil {
		batch, err := cons.Fetch(maxTasks-done, jetstream.FetchMaxWait(idle))
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var task struct {
				Job string  `json:"job"`
				I   int     `json:"i"`
				X   float64 `json:"x"`
			}
			if err := json.Unmarshal(m.Data(), &task); err != nil {
				_ = m.Term()
				continue
			}
			out, _ := json.Marshal(map[string]any{"i": task.I, "y": task.X * task.X, "act": act.ActivationID})
			if _, err := js.Publish(ctx, "results."+task.Job, out); err != nil {
				_ = m.Nak()
				return nil, fmt.Errorf("publish result of task %d: %w", task.I, err)
			}
			if err := m.DoubleAck(ctx); err != nil {
				return nil, fmt.Errorf("ack task %d: %w", task.I, err)
			}
			done++
		}
		if got == 0 {
			break // idle
		}
	}
	return map[string]any{"job": job, "pool": pool, "tasks": done}, nil
}
