package action

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestLoop drives Loop as the actionloop proxy does: the acknowledgement
// only when __OW_WAIT_FOR_ACK is set, one result line per input line, an
// error line for a body without "value" or a failing executor, and the
// activation context (deadline moved earlier by the margin) for the
// executor.
func TestLoop(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	exec := func(ctx context.Context, p map[string]any) (map[string]any, error) {
		if p["fail"] == true {
			return nil, errors.New("failed on purpose")
		}
		act, _ := FromContext(ctx)
		d, _ := ctx.Deadline()
		return map[string]any{"echo": p["x"], "id": act.ActivationID, "host": act.APIHost,
			"early": deadline.Sub(d) >= time.Second}, nil
	}
	in := strings.Join([]string{
		`{"value":{"x":"a\nb"},"activation_id":"a1","deadline":"` + jsonMillis(deadline) + `"}`,
		`{"activation_id":"a2","job":"bare"}`,
		`{"value":{"fail":true},"activation_id":"a3"}`,
		`not json`,
	}, "\n") + "\n"
	for _, ack := range []bool{true, false} {
		env := map[string]string{"__OW_API_HOST": "http://ow"}
		if ack {
			env[EnvWaitForAck] = "1"
		}
		var out bytes.Buffer
		err := Loop(context.Background(), strings.NewReader(in), &out, exec, LoopConfig{Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if ack {
			if lines[0] != `{"ok":true}` {
				t.Fatalf("first line %q, want the acknowledgement", lines[0])
			}
			lines = lines[1:]
		}
		if len(lines) != 4 {
			t.Fatalf("ack %v: %d result lines, want 4:\n%s", ack, len(lines), out.String())
		}
		var r [4]map[string]any
		for i, l := range lines {
			if err := json.Unmarshal([]byte(l), &r[i]); err != nil {
				t.Fatalf("line %d %q: %v", i, l, err)
			}
		}
		if r[0]["echo"] != "a\nb" || r[0]["id"] != "a1" || r[0]["host"] != "http://ow" || r[0]["early"] != true {
			t.Errorf("activation a1: %v", r[0])
		}
		if msg, _ := r[1]["error"].(string); !strings.Contains(msg, `no "value"`) {
			t.Errorf("body without value: %v", r[1])
		}
		if r[2]["error"] != "failed on purpose" {
			t.Errorf("failing executor: %v", r[2])
		}
		if _, ok := r[3]["error"]; !ok {
			t.Errorf("a line that is not JSON: %v", r[3])
		}
	}
}

func jsonMillis(t time.Time) string {
	b, _ := json.Marshal(t.UnixMilli())
	return string(b)
}

// TestLoopStops: Loop returns when its input ends or its context does.
func TestLoopStops(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Loop(ctx, r, io.Discard, nil, LoopConfig{Getenv: func(string) string { return "" }}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Loop did not return after its context ended")
	}
}

// FuzzParseRun: any /run body (or actionloop line) either parses to an
// object of params or is refused with an error, never a panic.
func FuzzParseRun(f *testing.F) {
	for _, s := range []string{`{"value":{"a":1},"deadline":"123"}`, `{"value":null}`, `{}`, `{"value":[1]}`, `{"deadline":1e400,"value":{}}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, err := parseRun(b, "")
		if err == nil && p == nil {
			t.Fatalf("%q: no error and no params", b)
		}
	})
}
