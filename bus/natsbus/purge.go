package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Purge drops key's messages from queue, whether pending, delivered and
// unsettled, or left behind on the stream below the consumer's ack floor
// (see doc.go, "Broker crashes"). It never touches another key's
// messages, on any supported server.
//
// It deletes key's messages one by one (purgeEach) on every server
// version. A subject-filtered stream purge would be one request, but on
// no supported version does it leave the queue's shared consumer
// q-<queue> (filter <prefix>.task.<queue>.>, wider than the purged
// <prefix>.task.<queue>.<key>) intact while it holds deliveries:
//
//   - Before 2.9.12 it moved the consumer to the stream's end: the
//     pending messages of every other key were never delivered (fixed by
//     nats-server PR #3838).
//   - From 2.10.11 (PR #5075) to at least 2.15.3, consumer.purge takes a
//     deleted message out of the consumer's unsettled deliveries and
//     raises the consumer-sequence ack floor to that delivery's
//     sequence, while the stream-sequence ack floor stays where it was.
//     The next ack of the delivery that follows then moves the stream
//     floor past every delivery still unsettled of other keys (tasks in a
//     runtime's buffer, or held by a runtime that died): the server drops
//     them from its unsettled set, never delivers them again and, the
//     stream being a work queue, never removes them. The jobs they belong
//     to never end. The chaos suite found it (docs/chaos.md), and the
//     conformance case PurgeHeldDeliveries fails on a filtered purge.
//
// A message delete leaves consumers alone: a deleted delivery still
// unsettled is settled or expires like any other, and is skipped when it
// comes up again. At about 130 µs a message on a 2-core machine, a job's
// end costs at most its backlog (coordinator --job-backlog, 8,192 by
// default) times that, about a second, in the background; a job that
// ended with nothing queued costs one request.
func (b *Bus) Purge(ctx context.Context, queue, key string) error {
	if err := b.purgeEach(ctx, b.taskSubject(queue, key)); err != nil {
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
// gone (acked meanwhile: the stream is a work queue) is no error. It
// speaks the JetStream API directly because jetstream's DeleteMsg hides
// the error code.
//
// Every supported server answers a delete of a message already removed
// with the generic "delete failed" code (10057) carrying the store's
// ErrStoreMsgNotFound text, "no message found"; "sequence not found"
// (10043) is its answer when the store reports nothing removed without an
// error, and 10037 that of a message get. Other delete failures (a store
// closed, a sequence past the stream's last: "stream store EOF") are
// errors.
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
	case resp.Error != nil && messageGone(resp.Error.ErrCode, resp.Error.Description):
		return nil
	case resp.Error != nil:
		return fmt.Errorf("delete sequence %d: %s (%d)", seq, resp.Error.Description, resp.Error.ErrCode)
	default:
		return fmt.Errorf("delete sequence %d: not deleted", seq)
	}
}

// Server error codes of a message delete (nats-server's
// jetstream_errors_generated.go).
const (
	errCodeSequenceNotFound = 10043 // JSSequenceNotFoundErrF
	errCodeMsgDeleteFailed  = 10057 // JSStreamMsgDeleteFailedF, "{err}"
	storeMsgNotFound        = "no message found"
)

func messageGone(code int, description string) bool {
	switch code {
	case int(jetstream.JSErrCodeMessageNotFound), errCodeSequenceNotFound:
		return true
	case errCodeMsgDeleteFailed:
		return description == storeMsgNotFound
	}
	return false
}
