package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// sampleEvery is how often sampleState records the task stream's and
// the pool consumer's positions.
const sampleEvery = 250 * time.Millisecond

// sampleState writes, every sampleEvery until ctx ends, one line of the
// task stream's state (messages, first and last sequence, deleted) and
// of each of its consumers' positions (delivered, ack floor, pending,
// unacknowledged) to broker-state.log in the round's log directory, read
// from the server's monitoring endpoint. A consumer that stops getting
// messages while the stream holds some shows there as the moment its
// position moved past them.
func (s *NATSServer) sampleState(ctx context.Context, logDir string) {
	f, err := os.Create(filepath.Join(logDir, "broker-state.log"))
	if err != nil {
		return
	}
	defer f.Close()
	client := &http.Client{Timeout: sampleEvery}
	url := fmt.Sprintf("http://127.0.0.1:%d/jsz?consumers=true", s.mon)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	last := ""
	for {
		line := s.sample(ctx, client, url)
		// Only changes: a stalled queue is one line, not hundreds.
		if line != last {
			fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format("15:04:05.000"), line)
			last = line
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *NATSServer) sample(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return "unreachable"
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name  string `json:"name"`
				State struct {
					Msgs       uint64 `json:"messages"`
					FirstSeq   uint64 `json:"first_seq"`
					LastSeq    uint64 `json:"last_seq"`
					NumDeleted int    `json:"num_deleted"`
				} `json:"state"`
				Consumers []struct {
					Name      string `json:"name"`
					Delivered struct {
						Stream uint64 `json:"stream_seq"`
					} `json:"delivered"`
					AckFloor struct {
						Stream uint64 `json:"stream_seq"`
					} `json:"ack_floor"`
					NumPending    uint64 `json:"num_pending"`
					NumAckPending int    `json:"num_ack_pending"`
					NumWaiting    int    `json:"num_waiting"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return "decoding /jsz: " + err.Error()
	}
	line := ""
	for _, a := range jsz.Accounts {
		for _, st := range a.Streams {
			if st.Name != "SKEIN_TASKS" {
				continue
			}
			line += fmt.Sprintf("tasks msgs=%d seq=%d..%d deleted=%d", st.State.Msgs, st.State.FirstSeq, st.State.LastSeq, st.State.NumDeleted)
			for _, c := range st.Consumers {
				line += fmt.Sprintf(" | %s delivered=%d floor=%d pending=%d unacked=%d waiting=%d",
					c.Name, c.Delivered.Stream, c.AckFloor.Stream, c.NumPending, c.NumAckPending, c.NumWaiting)
			}
		}
	}
	return line
}
