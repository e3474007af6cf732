package trigger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// An Event is what a source hands the runner: its id (the same on every
// delivery of the same event) and the job inputs it carries.
type Event struct {
	ID     string
	Inputs []json.RawMessage
}

// s3Notification is the S3 event message (AWS's format, which
// S3-compatible servers such as versitygw and MinIO publish): the fields
// a trigger reads.
type s3Notification struct {
	Records []struct {
		EventName string `json:"eventName"`
		EventTime string `json:"eventTime"`
		S3        struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key       string `json:"key"`
				ETag      string `json:"eTag"`
				VersionID string `json:"versionId"`
				Sequencer string `json:"sequencer"`
			} `json:"object"`
		} `json:"s3"`
	} `json:"Records"`
}

// ParseS3 reads an S3 bucket notification: one input per created object,
// its URL (s3://bucket/key), and an id made of the objects' bucket, key,
// version, ETag and sequencer, so that one upload is one event however
// often its notification is delivered, and a second upload of a key is
// another. Records of other events (removals, test events) are skipped;
// a notification with none left has no inputs.
func ParseS3(body []byte) (Event, error) {
	var n s3Notification
	if err := json.Unmarshal(body, &n); err != nil {
		return Event{}, fmt.Errorf("an S3 event notification: %w", err)
	}
	var ev Event
	h := sha256.New()
	for _, r := range n.Records {
		if !strings.Contains(r.EventName, "ObjectCreated") {
			continue
		}
		b, o := r.S3.Bucket.Name, r.S3.Object
		if b == "" || o.Key == "" {
			return Event{}, fmt.Errorf("an S3 event notification: a record without bucket or key")
		}
		// AWS URL-encodes keys in notifications (a space as "+").
		key := o.Key
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		u, _ := json.Marshal("s3://" + b + "/" + key)
		ev.Inputs = append(ev.Inputs, u)
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00", b, key, o.VersionID, o.ETag, o.Sequencer, r.EventTime)
	}
	ev.ID = "s3-" + hex.EncodeToString(h.Sum(nil)[:16])
	return ev, nil
}

// ParseJSON reads a message whose body is one JSON input.
func ParseJSON(id string, body []byte) (Event, error) {
	if !json.Valid(body) {
		return Event{}, fmt.Errorf("the message is not JSON")
	}
	return Event{ID: id, Inputs: []json.RawMessage{json.RawMessage(body)}}, nil
}

// bodyID is an id for a message that has none of its own: its body's
// hash (two messages with the same body are then one event).
func bodyID(body []byte) string {
	s := sha256.Sum256(body)
	return "b-" + hex.EncodeToString(s[:16])
}

// CheckS3 checks that body is an S3 event notification, as a webhook
// receives it: an object with a list of Records, each naming its event,
// bucket and key; or an S3 test event (test true; AWS and versitygw send
// one when notifications are set up), which carries no object.
func CheckS3(body []byte) (test bool, err error) {
	var n struct {
		Records []struct {
			EventName string `json:"eventName"`
			S3        struct {
				Bucket struct {
					Name string `json:"name"`
				} `json:"bucket"`
				Object struct {
					Key string `json:"key"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
		Event string `json:"Event"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return false, fmt.Errorf("not an S3 event notification: %w", err)
	}
	if n.Event == "s3:TestEvent" && n.Records == nil {
		return true, nil
	}
	if len(n.Records) == 0 {
		return false, fmt.Errorf("not an S3 event notification: no Records")
	}
	for i, r := range n.Records {
		if r.EventName == "" || r.S3.Bucket.Name == "" || r.S3.Object.Key == "" {
			return false, fmt.Errorf("not an S3 event notification: record %d lacks its eventName, bucket or key", i+1)
		}
	}
	return false, nil
}
