package bustest

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
)

// streamManySubscribers: many filtered subscriptions on one connection,
// as a coordinator holds one per job, started concurrently from
// different positions while messages are published, each see exactly the
// messages of their pattern from their start, in order, once. One of
// them does not read until every other has all its messages: a reader
// that stalls holds up no one else, and still gets everything after.
//
// Messages carry their index i and go to subject "<root>.s<i mod
// subjects>". The first batch is published with positions; then live
// subscriptions start (before the second batch), subscriptions from a
// position of the first batch start while the second batch is being
// published, and every subscription must see its matches from the first
// batch at or after its position and all its matches of the second.
func (s *suite) streamManySubscribers(t *testing.T) {
	t.Parallel()
	const subjects = 5
	b, pub, ctx, root := s.newBus(t), s.newBus(t), s.ctx(t), s.subject(t, "many")
	first, second := n(40, 15), n(600, 150)
	subject := func(i int) string { return root + ".s" + strconv.Itoa(i%subjects) }
	seqs := make([]uint64, first)
	for i := range first {
		seq, err := pub.PublishSeq(ctx, subject(i), bus.Message{Data: []byte(strconv.Itoa(i))})
		settle(t, ctx, "publish with position", err)
		seqs[i] = seq
	}

	type sub struct {
		name    string
		pattern string
		from    int // index of the first batch's message to start at; -1 live
		stall   bool
		ch      <-chan bus.Message
	}
	var subs []*sub
	for j := range subjects {
		subs = append(subs,
			&sub{name: fmt.Sprintf("live s%d", j), pattern: root + ".s" + strconv.Itoa(j), from: -1},
			&sub{name: fmt.Sprintf("s%d from %d", j, (j*7)%first), pattern: root + ".s" + strconv.Itoa(j), from: (j * 7) % first},
			&sub{name: fmt.Sprintf("s%d from %d", j, first-1-j), pattern: root + ".s" + strconv.Itoa(j), from: first - 1 - j})
	}
	subs = append(subs,
		&sub{name: "all from 0", pattern: root + ".>", from: 0},
		&sub{name: "all from the middle", pattern: root + ".*", from: first / 2},
		&sub{name: "live all", pattern: root + ".>", from: -1},
		&sub{name: "stalled s1 from 3", pattern: root + ".s1", from: 3, stall: true})
	want := func(sb *sub) []int {
		var w []int
		for i := range first + second {
			if (i >= first || sb.from >= 0 && i >= sb.from) && (sb.pattern == root+".>" || sb.pattern == root+".*" || sb.pattern == subject(i)) {
				w = append(w, i)
			}
		}
		return w
	}

	for _, sb := range subs {
		if sb.from < 0 {
			ch, err := b.Subscribe(ctx, sb.pattern, bus.SubscribeOptions{})
			settle(t, ctx, "subscribe "+sb.name, err)
			sb.ch = ch
		}
	}
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := first; i < first+second; i++ {
			if err := pub.Publish(ctx, subject(i), bus.Message{Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, sb := range subs {
		if sb.from < 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := b.Subscribe(ctx, sb.pattern, bus.SubscribeOptions{From: seqs[sb.from]})
			if err != nil {
				t.Errorf("subscribe %s: %v", sb.name, err)
				return
			}
			sb.ch = ch
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	read := func(sb *sub) error {
		var last uint64
		for k, i := range want(sb) {
			select {
			case m, ok := <-sb.ch:
				if !ok {
					return fmt.Errorf("%s: closed after %d messages", sb.name, k)
				}
				if string(m.Data) != strconv.Itoa(i) || m.Subject != subject(i) {
					return fmt.Errorf("%s: message %d is %q on %s, want %d on %s", sb.name, k, m.Data, m.Subject, i, subject(i))
				}
				if m.Seq <= last || i < first && m.Seq != seqs[i] {
					return fmt.Errorf("%s: message %d at position %d after %d", sb.name, i, m.Seq, last)
				}
				last = m.Seq
			case <-ctx.Done():
				return fmt.Errorf("%s: %d of %d messages: %w", sb.name, k, len(want(sb)), ctx.Err())
			}
		}
		return nil
	}
	errs := make(chan error, len(subs))
	for _, sb := range subs {
		if sb.stall {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs <- read(sb) }()
	}
	wg.Wait()
	<-published
	for _, sb := range subs {
		if sb.stall {
			errs <- read(sb)
		}
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	for _, sb := range subs {
		none(t, sb.ch, s.d(100*time.Millisecond), "extra message for "+sb.name)
	}
}
