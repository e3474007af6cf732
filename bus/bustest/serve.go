package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// requestConcurrent checks that Serve answers a request while its
// handler still works on another one (a coordinator's slow submit or
// cancel must not hold up every other API call).
func (s *suite) requestConcurrent(t *testing.T) {
	t.Parallel()
	srv, cli, ctx, subj := s.newBus(t), s.newBus(t), s.ctx(t), s.name(t, "rpcconc")
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	blocked := make(chan struct{})
	release := make(chan struct{})
	handlerDone := make(chan error, 1)
	err := srv.Serve(sctx, subj, func(hctx context.Context, req bus.Message) ([]byte, error) {
		if string(req.Data) != "slow" {
			return []byte("fast"), nil
		}
		close(blocked)
		select {
		case <-release:
		case <-hctx.Done():
		}
		handlerDone <- hctx.Err()
		return []byte("slow"), nil
	})
	settle(t, ctx, "serve", err)

	slowErr := make(chan error, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, s.d(20*time.Second))
		defer cancel()
		got, err := cli.Request(rctx, subj, []byte("slow"))
		if err == nil && string(got) != "slow" {
			err = &bus.RemoteError{Msg: "reply " + string(got)}
		}
		slowErr <- err
	}()
	select {
	case <-blocked:
	case <-time.After(s.d(10 * time.Second)):
		t.Fatalf("the slow request did not reach its handler within %v", s.d(10*time.Second))
	}
	rctx, cancel := context.WithTimeout(ctx, s.d(5*time.Second))
	got, err := cli.Request(rctx, subj, []byte("quick"))
	cancel()
	if err != nil || string(got) != "fast" {
		t.Fatalf("request while another handler is busy: %q, %v; want \"fast\" at once", got, err)
	}
	close(release)
	if err := recv(t, slowErr, s.d(10*time.Second), "the slow reply"); err != nil {
		t.Fatalf("slow request: %v", err)
	}
	if err := recv(t, handlerDone, s.d(time.Second), "slow handler end"); err != nil {
		t.Errorf("released handler saw ctx error %v", err)
	}
}
