package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Purge drops key's messages from queue, whether pending, delivered and
// unsettled, or left behind on the stream below the consumer's ack floor
// (see doc.go, "Broker crashes"). It never touches another key's
// messages, on any supported server.
//
// A subject-filtered stream purge is one request, but nats-server before
// 2.9.12 also moved every consumer whose filter merely overlaps the
// purged subject (here the queue's shared consumer q-<queue>, filter
// <prefix>.task.<queue>.>) to the stream's end: the pending messages of
// every other key of the queue were never delivered. nats-server fixed it
// in 2.9.12 (commit 46af97987, "Fix current consumers not getting messages
// after purge", PR #3838: stream.purge updates a consumer only when the
// purged subject covers the consumer's whole filter). On an older server
// Purge therefore removes key's messages one by one: a message get by
// subject (next_by_subj, from the last sequence found) and a delete of
// that sequence, which leaves consumers alone.
//
// The version checked is the one of the server this connection is
// attached to; in a cluster every server is assumed to be on the same
// side of 2.9.12.
func (b *Bus) Purge(ctx context.Context, queue, key string) error {
	subj := b.taskSubject(queue, key)
	if !serverAtLeast(b.nc.ConnectedServerVersion(), 2, 9, 12) {
		if err := b.purgeEach(ctx, subj); err != nil {
			return fmt.Errorf("natsbus: purge %s/%s: %w", queue, key, err)
		}
		return nil
	}
	s, err := b.js.Stream(ctx, b.tasksStream)
	if err != nil {
		return fmt.Errorf("natsbus: purge: %w", err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
		return fmt.Errorf("natsbus: purge %s/%s: %w", queue, key, err)
	}
	return nil
}

// purgeEach deletes subj's messages from the task stream one by one, in
// ascending order: a message get by subject (next_by_subj) finds the
// next one while the previous one is deleted. A key with nothing left
// costs one request.
//
// The deletes are strictly ordered, one at a time: nats-server 2.9.10
// keeps per-block first and last sequences per subject and, when a
// subject's last message of a block is deleted before the others, later
// points the subject's first at that deleted sequence
// (msgBlock.removeSeqPerSubject, fixed in 2.9.15-16), hiding the
// messages left from next_by_subj. Parallel deletes over ranges were
// twice as fast and left messages behind.
func (b *Bus) purgeEach(ctx context.Context, subj string) error {
	s, err := b.js.Stream(ctx, b.tasksStream)
	if err != nil {
		return err
	}
	next := func(from uint64) (uint64, error) {
		m, err := s.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("find a message of %s from sequence %d: %w", subj, from, err)
		}
		return m.Sequence, nil
	}
	seq, err := next(1)
	for err == nil && seq != 0 {
		var (
			wg     sync.WaitGroup
			delErr error
		)
		wg.Add(1)
		go func(seq uint64) {
			defer wg.Done()
			delErr = b.deleteTask(ctx, seq)
		}(seq)
		seq, err = next(seq + 1)
		wg.Wait()
		if err == nil {
			err = delErr
		}
	}
	return err
}

// deleteTask removes one message of the task stream; a message already
// gone (acked meanwhile) is no error. It speaks the JetStream API
// directly because jetstream's DeleteMsg hides the error code.
func (b *Bus) deleteTask(ctx context.Context, seq uint64) error {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NoErase bool   `json:"no_erase"`
	}{seq, true})
	if err != nil {
		return err
	}
	msg, err := b.nc.RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.DELETE."+b.tasksStream, req)
	if err != nil {
		return fmt.Errorf("delete sequence %d: %w", seq, err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("delete sequence %d: bad reply: %w", seq, err)
	}
	switch {
	case resp.Success:
		return nil
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil
	case resp.Error != nil:
		return fmt.Errorf("delete sequence %d: %s (%d)", seq, resp.Error.Description, resp.Error.ErrCode)
	default:
		return fmt.Errorf("delete sequence %d: not deleted", seq)
	}
}

// serverAtLeast reports whether the server version v ("2.9.10",
// "2.10.0-beta.1") is at least major.minor.patch. An unparsable version
// is taken as old.
func serverAtLeast(v string, major, minor, patch int) bool {
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	var got [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return false
		}
		got[i] = n
	}
	want := [3]int{major, minor, patch}
	for i := range got {
		if got[i] != want[i] {
			return got[i] > want[i]
		}
	}
	return true
}
