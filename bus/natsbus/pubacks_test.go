package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackTestConn starts a server with a stream "S" on subjects s.> (at most
// limit messages, new ones refused beyond) and a pubAcks on a connection
// that fails pending batches when it drops, as Connect wires it.
func ackTestConn(t *testing.T, limit int64) (*Embedded, *pubAcks) {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	p := &pubAcks{}
	nc, err := nats.Connect(e.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { p.disconnected() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, MaxMsgs: limit, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	return e, p
}

func msgs(subject string, n int) []*nats.Msg {
	out := make([]*nats.Msg, n)
	for i := range out {
		out[i] = &nats.Msg{Subject: subject, Data: []byte(fmt.Sprint(i))}
	}
	return out
}

func pendingAcks(p *pubAcks) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// TestPubAcksStoredAndRefused: a batch returns once the stream stored it
// all; a message the stream refuses (its limit), or that no stream takes,
// fails its batch with the server's reason.
func TestPubAcksStoredAndRefused(t *testing.T) {
	_, p := ackTestConn(t, 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Concurrent batches, each waiting for its own acknowledgements.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.publish(ctx, msgs("s.a", 500))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a batch within the stream's limit: %v", err)
		}
	}
	// 4,000 stored: 1,000 more fit, the rest are refused.
	err := p.publish(ctx, msgs("s.b", 1500))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("a batch past the stream's limit: got %v, want the server's API error", err)
	}
	t.Logf("refused: %v", err)
	if err := p.publish(ctx, msgs("nostream", 3)); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("a subject no stream takes: got %v, want %v", err, jetstream.ErrNoStreamResponse)
	}
	if n := pendingAcks(p); n != 0 {
		t.Fatalf("%d acknowledgements still awaited after every batch returned", n)
	}
}

// TestPubAcksGiveUp: a batch whose acknowledgements do not come (here a
// plain subscriber takes the subject and never answers) returns when its
// context ends, and when the connection drops, and forgets its messages.
func TestPubAcksGiveUp(t *testing.T) {
	e, p := ackTestConn(t, -1)
	sub, err := p.nc.SubscribeSync("silent.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.publish(ctx, msgs("silent.a", 10)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
	if n := pendingAcks(p); n != 0 {
		t.Fatalf("%d acknowledgements still awaited after the batch gave up", n)
	}

	done := make(chan error, 1)
	go func() { done <- p.publish(context.Background(), msgs("silent.b", 10)) }()
	deadline := time.Now().Add(5 * time.Second)
	for pendingAcks(p) < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	e.Shutdown()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrDisconnected) {
			t.Fatalf("got %v, want %v", err, nats.ErrDisconnected)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a batch still waits 10 s after its connection dropped")
	}
}

// TestAckError reads the server's acknowledgements as the JetStream
// library does.
func TestAckError(t *testing.T) {
	status := nats.Header{}
	status.Set("Status", "503")
	for _, c := range []struct {
		m    *nats.Msg
		want string
	}{
		{&nats.Msg{Data: []byte(`{"stream":"S", "seq":7}`)}, ""},
		{&nats.Msg{Data: []byte(`{"stream":"S", "domain":"d", "seq":7,"duplicate": true}`)}, ""},
		{&nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`)}, "maximum messages exceeded"},
		{&nats.Msg{Data: []byte(`{"stream":"error","seq":1}`)}, ""},
		{&nats.Msg{Header: status}, jetstream.ErrNoStreamResponse.Error()},
		{&nats.Msg{Data: []byte(`{"seq":1}`)}, jetstream.ErrInvalidJSAck.Error()},
		{&nats.Msg{Data: []byte(`not json`)}, jetstream.ErrInvalidJSAck.Error()},
	} {
		err := ackError(c.m)
		if got := fmt.Sprint(err); (c.want == "" && err != nil) || (c.want != "" && (err == nil || !strings.Contains(got, c.want))) {
			t.Errorf("%q: got %v, want %q", c.m.Data, err, c.want)
		}
	}
}

// TestNumDelivered reads the delivery count as the JetStream library's
// metadata parser does, on both forms of the acknowledgement subject.
func TestNumDelivered(t *testing.T) {
	for _, c := range []struct {
		reply string
		want  uint64
		ok    bool
	}{
		{"$JS.ACK.S.C.3.100.90.1764500000000000000.7", 3, true},
		{"$JS.ACK._.ACCHASH.S.C.12.100.90.1764500000000000000.7.rnd", 12, true},
		{"$JS.ACK.dom.ACCHASH.S.C.1.100.90.1764500000000000000.7", 1, true},
		{"$JS.ACK.S.C.x.100.90.1.7", 0, false},
		{"$JS.ACK.S.C.3.100", 0, false},
		{"_INBOX.abc", 0, false},
		{"", 0, false},
	} {
		got, ok := numDelivered(c.reply)
		if got != c.want || ok != c.ok {
			t.Errorf("%q: got %d %v, want %d %v", c.reply, got, ok, c.want, c.ok)
		}
		// The library agrees wherever it can parse the subject.
		md, err := (&nats.Msg{Reply: c.reply}).Metadata()
		if err == nil && md.NumDelivered != got || err == nil && !ok {
			t.Errorf("%q: the library reads %+v (%v), numDelivered %d %v", c.reply, md, err, got, ok)
		}
	}
}
