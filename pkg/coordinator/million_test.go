package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// paddedList is a JSON list of n strings of about size bytes each.
func paddedList(n, size int) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"%06d-%s"`, i, strings.Repeat("x", size))
	}
	sb.WriteByte(']')
	return sb.String()
}

// TestLargeInputSurvivesRestart: an iterdata several times larger than
// what rides in a spec goes in chunks on the job log; the job's results
// pass the coordinator's memory bound, so most are read back from the
// event stream; and a coordinator killed mid-job is replaced by one that
// reads the iterdata back from its chunks (Recover), on every bus. The
// result is the input, element for element.
func TestLargeInputSurvivesRestart(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 4)
		ab := tb.connect(t, "coordinator-a")
		cfg := coordinator.Config{ResultMemory: 64 << 10}
		a, killA := newCoordinator(t, ab, cfg)
		tasks := n(3000, 1500)
		iter := paddedList(tasks, 1000) // 3 MB (1.5 MB short): 2 or more chunks
		spec := &wire.JobSpec{Kind: wire.JobMap, Function: "echo", InvokePoolThreads: 1}
		ca := client.New(ab)
		if err := ca.StreamInput(ctx, spec, strings.NewReader(iter)); err != nil {
			t.Fatal(err)
		}
		if spec.IterdataRef == nil || spec.Iterdata != nil || spec.IterdataRef.Parts < 2 {
			t.Fatalf("a %d-byte iterdata went as %d inline bytes and reference %+v: want chunks", len(iter), len(spec.Iterdata), spec.IterdataRef)
		}
		id, err := ca.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the first tasks done", func() bool { return statusOf(a, id).Done >= 20 })
		killA()

		bb := tb.connect(t, "coordinator-b")
		b, _ := newCoordinator(t, bb, cfg)
		taken, err := b.Recover(ctx, time.Hour)
		if err != nil || !slices.Equal(taken, []string{id}) {
			t.Fatalf("recovered %v, %v; want %s", taken, err, id)
		}
		cl := client.New(bb)
		end, err := cl.Wait(ctx, id)
		if err != nil || end.State != wire.StateDone || end.Done != tasks {
			t.Fatalf("the recovered job: %+v, %v", end, err)
		}
		res, err := cl.Result(ctx, id)
		if err != nil || string(res) != iter {
			t.Fatalf("result of %d bytes (%v), want the %d bytes of the input", len(res), err, len(iter))
		}
	})
}

// TestInputReferenceChecked: a reference whose chunks do not add up to
// what it says (a chunk missing, a wrong hash) refuses the job instead
// of running it on a wrong input.
func TestInputReferenceChecked(t *testing.T) {
	b, c, cl := setup(t)
	_ = b
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := paddedList(2000, 1000)
	for _, tc := range []struct {
		name   string
		change func(r *wire.InputRef)
		want   string
	}{
		{"chunk missing", func(r *wire.InputRef) { r.Parts++ }, "chunks on the job log"},
		{"wrong hash", func(r *wire.InputRef) { r.SHA256 = bytes.Repeat([]byte{1}, 32) }, "does not match its reference"},
		{"wrong size", func(r *wire.InputRef) { r.Size-- }, "add up to more than"},
		{"no hash", func(r *wire.InputRef) { r.SHA256 = nil }, "without a SHA-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &wire.JobSpec{Kind: wire.JobMap, Function: "echo"}
			if err := cl.StreamInput(ctx, spec, strings.NewReader(iter)); err != nil {
				t.Fatal(err)
			}
			tc.change(spec.IterdataRef)
			_, err := c.Submit(ctx, spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("submit: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestStreamInputKeepsSmallInputsInline: small inputs (and every kind of
// value) ride in the spec as they were.
func TestStreamInputKeepsSmallInputsInline(t *testing.T) {
	_, _, cl := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		kind       wire.JobKind
		in, inline string
	}{
		{wire.JobMap, " [1, 2,\n {\"a\": [3]}] \n", "[1, 2,\n {\"a\": [3]}]"},
		{wire.JobMap, "[]", `[]`},
		{wire.JobCall, `{"x": 1, "y": "z"}`, `{"x": 1, "y": "z"}`},
		{wire.JobCall, `"a string"`, `"a string"`},
		{wire.JobCall, `42`, `42`},
	} {
		spec := &wire.JobSpec{Kind: tc.kind, Function: "echo"}
		if err := cl.StreamInput(ctx, spec, strings.NewReader(tc.in)); err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		got := spec.Iterdata
		if tc.kind == wire.JobCall {
			got = spec.Data
		}
		if string(got) != tc.inline || spec.DataRef != nil || spec.IterdataRef != nil || spec.ID != "" {
			t.Errorf("%q: inline %q, refs %v %v, id %q; want %q inline", tc.in, got, spec.DataRef, spec.IterdataRef, spec.ID, tc.inline)
		}
	}
}

// TestStreamInputRefusesBadJSON: the input is checked as it is read.
func TestStreamInputRefusesBadJSON(t *testing.T) {
	_, _, cl := setup(t)
	big := paddedList(3000, 1000)
	for _, tc := range []struct {
		kind wire.JobKind
		in   string
		want string
	}{
		{wire.JobMap, `{"a":1}`, "must be a JSON list, got an object"},
		{wire.JobMap, `[1,2`, "unexpected end of input"},
		{wire.JobMap, `[1,2] 3`, "unexpected data after the JSON value"},
		{wire.JobMap, big[:len(big)-5000] + `,x]`, "in element 2995"},
		{wire.JobCall, ``, "empty input"},
		{wire.JobCall, `{"x":1,}`, "invalid character"},
	} {
		spec := &wire.JobSpec{Kind: tc.kind, Function: "echo"}
		err := cl.StreamInput(context.Background(), spec, strings.NewReader(tc.in))
		var ie *client.InputError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errorsAs(err, &ie) {
			t.Errorf("%.40q: %v; want an InputError saying %q", tc.in, err, tc.want)
		}
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
