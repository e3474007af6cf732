package bustest

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// Stream positions (bus.Message.Seq, bus.SubscribeOptions.From and
// Stream.PublishSeq): what readers that must know where a log ends rely on.

// streamPositions: PublishSeq returns the position a subscriber sees;
// positions increase strictly in stream order across subjects; From
// replays from a position inclusive, before live messages, and wins over
// Since.
func (s *suite) streamPositions(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "pos")
	other := s.newBus(t)
	seqs := make([]uint64, 6)
	for i := range seqs {
		subj := root + ".a"
		if i%2 == 1 {
			subj = root + ".b"
		}
		seq, err := b.PublishSeq(ctx, subj, bus.Message{Data: []byte(strconv.Itoa(i))})
		settle(t, ctx, "publish with position", err)
		if seq == 0 {
			t.Fatalf("PublishSeq returned position 0")
		}
		if i > 0 && seq <= seqs[i-1] {
			t.Fatalf("position %d after %d: want strictly increasing", seq, seqs[i-1])
		}
		seqs[i] = seq
	}
	// Every subject from the third message, on another connection; Since
	// in the future must not matter when From is set.
	all, err := other.Subscribe(ctx, root+".>", bus.SubscribeOptions{From: seqs[2], Since: time.Now().Add(time.Hour)})
	settle(t, ctx, "subscribe from a position", err)
	for i := 2; i < len(seqs); i++ {
		m := recv(t, all, s.d(10*time.Second), "replay from a position")
		if string(m.Data) != strconv.Itoa(i) || m.Seq != seqs[i] {
			t.Fatalf("replay from %d: got %q at %d, want %d at %d", seqs[2], m.Data, m.Seq, i, seqs[i])
		}
	}
	// One subject from the second message: only its own, at their positions.
	onlyA, err := other.Subscribe(ctx, root+".a", bus.SubscribeOptions{From: seqs[1]})
	settle(t, ctx, "subscribe one subject from a position", err)
	for _, i := range []int{2, 4} {
		m := recv(t, onlyA, s.d(10*time.Second), "filtered replay from a position")
		if string(m.Data) != strconv.Itoa(i) || m.Seq != seqs[i] || m.Subject != root+".a" {
			t.Fatalf("filtered replay: got %q at %d on %s, want %d at %d on %s.a", m.Data, m.Seq, m.Subject, i, seqs[i], root)
		}
	}
	none(t, onlyA, s.d(300*time.Millisecond), "a message of another subject or before From")
	// Live messages follow the replay, with positions past it; a plain
	// Publish's message has a position too.
	settle(t, ctx, "publish", b.Publish(ctx, root+".a", bus.Message{Data: []byte("live")}))
	last := seqs[len(seqs)-1]
	for what, ch := range map[string]<-chan bus.Message{"all": all, "a": onlyA} {
		m := recv(t, ch, s.d(10*time.Second), "live after replay on "+what)
		if string(m.Data) != "live" || m.Seq <= last {
			t.Fatalf("live on %s: got %q at %d, want \"live\" after %d", what, m.Data, m.Seq, last)
		}
	}
}

// streamPositionsConcurrent: positions of concurrent PublishSeq calls
// on one stream are distinct and are where a subscriber finds each
// message; reading until the last returned position sees every one.
func (s *suite) streamPositionsConcurrent(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "posconc")
	pubs, each := 4, n(20, 5)
	var mu sync.Mutex
	at := map[uint64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pb := b
			if p%2 == 1 {
				pb = s.newBus(t)
			}
			for i := range each {
				data := strconv.Itoa(p) + "-" + strconv.Itoa(i)
				seq, err := pb.PublishSeq(ctx, root+"."+strconv.Itoa(p), bus.Message{Data: []byte(data)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := at[seq]; dup {
					mu.Unlock()
					errs <- &posError{seq: seq, a: prev, b: data}
					return
				}
				at[seq] = data
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var first, last uint64
	for seq := range at {
		if first == 0 || seq < first {
			first = seq
		}
		last = max(last, seq)
	}
	ch, err := b.Subscribe(ctx, root+".>", bus.SubscribeOptions{From: first})
	settle(t, ctx, "subscribe from the first position", err)
	var prev uint64
	for got := 0; got < len(at); got++ {
		m := recv(t, ch, s.d(10*time.Second), "replay of concurrent publishes")
		if m.Seq <= prev {
			t.Fatalf("position %d after %d: want strictly increasing", m.Seq, prev)
		}
		prev = m.Seq
		if want, ok := at[m.Seq]; !ok || want != string(m.Data) {
			t.Fatalf("at %d: got %q, PublishSeq returned this position for %q", m.Seq, m.Data, want)
		}
	}
	if prev != last {
		t.Fatalf("replay ended at %d, the last position returned is %d", prev, last)
	}
}

type posError struct {
	seq  uint64
	a, b string
}

func (e *posError) Error() string {
	return "position " + strconv.FormatUint(e.seq, 10) + " returned for both " + e.a + " and " + e.b
}

// streamReadToMark: a reader learns where the log ends by publishing a
// mark and reading until it comes back, even when a long run of other
// subjects' messages lies between (on a bus that filters in the client
// such a run looks like silence).
func (s *suite) streamReadToMark(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "mark")
	start, err := b.PublishSeq(ctx, root+".log.start", bus.Message{Data: []byte("start")})
	settle(t, ctx, "publish the first record", err)
	noise := make([]bus.Message, n(2000, 200))
	for i := range noise {
		noise[i] = bus.Message{Data: []byte("noise " + strconv.Itoa(i))}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(noise))
	sem := make(chan struct{}, 64)
	for _, m := range noise {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.Publish(ctx, root+".other", m); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	settle(t, ctx, "publish", b.Publish(ctx, root+".log.last", bus.Message{Data: []byte("last")}))
	mark, err := b.PublishSeq(ctx, root+".log.mark", bus.Message{Data: []byte("mark")})
	settle(t, ctx, "publish the mark", err)
	ch, err := b.Subscribe(ctx, root+".log.*", bus.SubscribeOptions{From: start})
	settle(t, ctx, "subscribe", err)
	var got []string
	for {
		m := recv(t, ch, s.d(30*time.Second), "the job log up to the mark")
		got = append(got, string(m.Data))
		if m.Seq >= mark {
			break
		}
	}
	if len(got) != 3 || got[0] != "start" || got[1] != "last" || got[2] != "mark" {
		t.Fatalf("read %q up to the mark, want [start last mark]", got)
	}
	// Positions are not clocks: subscribing from the mark gives it.
	ch2, err := b.Subscribe(ctx, root+".log.*", bus.SubscribeOptions{From: mark})
	settle(t, ctx, "subscribe from the mark", err)
	if m := recv(t, ch2, s.d(10*time.Second), "the mark"); m.Seq != mark || string(m.Data) != "mark" {
		t.Fatalf("from the mark: got %q at %d, want \"mark\" at %d", m.Data, m.Seq, mark)
	}
}

// streamReadTo: SubscribeOptions.To ends a subscription at a stored
// position, whether or not a matching message lies there or beyond it.
func (s *suite) streamReadTo(t *testing.T) {
	t.Parallel()
	b, ctx, root := s.newBus(t), s.ctx(t), s.subject(t, "readto")
	var seqs []uint64
	for i, sub := range []string{"a", "b", "a", "b"} {
		seq, err := b.PublishSeq(ctx, root+"."+sub, bus.Message{Data: []byte(strconv.Itoa(i))})
		settle(t, ctx, "publish with position", err)
		seqs = append(seqs, seq)
	}
	settle(t, ctx, "publish", b.Publish(ctx, root+".a", bus.Message{Data: []byte("after")}))
	read := func(pattern string, from, to uint64) []string {
		t.Helper()
		ch, err := b.Subscribe(ctx, pattern, bus.SubscribeOptions{From: from, To: to})
		settle(t, ctx, "subscribe to a position", err)
		var got []string
		deadline := time.After(s.d(10 * time.Second))
		for {
			select {
			case m, ok := <-ch:
				if !ok {
					return got
				}
				if m.Seq < from || m.Seq > to {
					t.Errorf("%s from %d to %d: got a message at %d", pattern, from, to, m.Seq)
				}
				got = append(got, string(m.Data))
			case <-deadline:
				t.Fatalf("%s from %d to %d: channel not closed after %q", pattern, from, to, got)
			}
		}
	}
	for _, c := range []struct {
		pattern  string
		from, to uint64
		want     string
	}{
		{root + ".a", seqs[0], seqs[3], "[0 2]"},   // the end is another subject's
		{root + ".a", seqs[0], seqs[2], "[0 2]"},   // the end is a matching message
		{root + ".b", seqs[0], seqs[0], "[]"},      // a match after To only
		{root + ".none", seqs[0], seqs[3], "[]"},   // nothing matches at all
		{root + ".>", seqs[1], seqs[3], "[1 2 3]"}, // everything in between
		{root + ".a", seqs[3], seqs[1], "[]"},      // From past To
		{root + ".*", seqs[3], seqs[3], "[3]"},     // one message
	} {
		got := read(c.pattern, c.from, c.to)
		if g := "[" + strings.Join(got, " ") + "]"; g != c.want {
			t.Errorf("%s from %d to %d: got %s, want %s", c.pattern, c.from, c.to, g, c.want)
		}
	}
}
