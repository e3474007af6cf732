package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the envelope version this build writes and reads. A message
// with another version is rejected with ErrVersion.
const Version = 1

// ErrVersion reports an envelope of a version this build cannot read.
var ErrVersion = errors.New("wire: unsupported envelope version")

// ErrMalformed reports bytes that are not a valid envelope.
var ErrMalformed = errors.New("wire: malformed message")

// Kind names what an envelope carries.
type Kind string

const (
	KindTask      Kind = "task"
	KindEvent     Kind = "event"
	KindEvents    Kind = "events"    // a batch of one job's events
	KindJob       Kind = "job"       // a submitted job spec, on the job log
	KindEnd       Kind = "end"       // a job's terminal record, on the job log
	KindPublished Kind = "published" // every task of a job is on its queue (job log)
	KindQueued    Kind = "queued"    // how far the publishing of a job's tasks got (job log)
	KindCancel    Kind = "cancel"    // a cancel notice (broadcast)
	KindReq       Kind = "req"       // an API request
	KindResp      Kind = "resp"      // an API response
	KindFeed      Kind = "feed"      // a map result forwarded to a reducer
	KindOwner     Kind = "owner"     // a coordinator takes a job over (job log)
	KindAlive     Kind = "alive"     // a coordinator's heartbeat (broadcast)
	KindInput     Kind = "input"     // a chunk of a large job input, on the job log
)

// Encode frames body as an envelope of kind. The envelope is a msgpack
// map {"v": version, "k": kind, "b": body} written in that order, so that
// readers can find the body without decoding it twice.
func Encode(kind Kind, body any) ([]byte, error) {
	if len(kind) > 31 {
		return nil, fmt.Errorf("wire: kind %q too long", kind)
	}
	// One allocation for a task or an event: a bytes.Buffer's own header
	// would be another (the encoder below keeps it).
	b := make([]byte, 0, 128)
	b = append(b, 0x83, 0xa1, 'v', byte(Version), 0xa1, 'k', 0xa0|byte(len(kind)))
	b = append(b, kind...)
	b = append(b, 0xa1, 'b')
	if b, ok, err := appendFast(b, body); ok {
		if err != nil {
			return nil, fmt.Errorf("wire: encode %s: %w", kind, err)
		}
		return b, nil
	}
	buf := bytes.NewBuffer(b)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.SetOmitEmpty(false)
	if err := enc.Encode(body); err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", kind, err)
	}
	return buf.Bytes(), nil
}

// split returns an envelope's kind and body, checking its version.
func split(data []byte) (Kind, []byte, error) {
	// Fast path: the layout Encode writes.
	if len(data) >= 9 && data[0] == 0x83 && data[1] == 0xa1 && data[2] == 'v' && data[4] == 0xa1 && data[5] == 'k' && data[6]&0xe0 == 0xa0 {
		n := int(data[6] & 0x1f)
		if 7+n+2 <= len(data) && data[7+n] == 0xa1 && data[8+n] == 'b' {
			if v := int(data[3]); v != Version {
				return "", nil, fmt.Errorf("%w: got %d, want %d", ErrVersion, v, Version)
			}
			return Kind(data[7 : 7+n]), data[9+n:], nil
		}
	}
	// Any other valid msgpack map with the same fields. Read by hand: the
	// library's DecodeRaw, which would take the body, leaves its pooled
	// decoder recording every byte it reads afterwards when it fails on
	// a malformed body (TestMalformedEnvelopeLeaksNothing).
	kind, body, v, err := splitGeneral(data)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if v != Version {
		return "", nil, fmt.Errorf("%w: got %d, want %d", ErrVersion, v, Version)
	}
	return kind, body, nil
}

// splitGeneral reads an envelope's fields from a msgpack map in any order,
// skipping unknown keys.
func splitGeneral(data []byte) (kind Kind, body []byte, v int, err error) {
	r := &reader{b: data}
	err = r.fields("envelope", func(key []byte) (err error) {
		switch string(key) {
		case "v":
			v, err = r.intField()
		case "k":
			var s string
			s, err = r.str()
			kind = Kind(s)
		case "b":
			start := r.off
			if err = r.skip(); err == nil {
				body = data[start:r.off]
			}
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return "", nil, 0, err
	}
	return kind, body, v, nil
}

// Peek returns the kind of an envelope without decoding its body.
func Peek(data []byte) (Kind, error) {
	k, _, err := split(data)
	return k, err
}

// Decode checks the envelope's version and kind and decodes its body into
// out.
func Decode(data []byte, kind Kind, out any) error {
	k, body, err := split(data)
	if err != nil {
		return err
	}
	if k != kind {
		return fmt.Errorf("%w: got a %q message, want %q", ErrMalformed, k, kind)
	}
	if len(body) == 0 {
		return fmt.Errorf("%w: %s message without a body", ErrMalformed, kind)
	}
	if err := decodeBody(body, out); err != nil {
		return fmt.Errorf("%w: %s body: %v", ErrMalformed, kind, err)
	}
	return nil
}

// appendFast appends the hand-written encoding of a Task, an Event or an
// Events batch (codec.go) to b; ok is false for any other body.
func appendFast(b []byte, body any) (_ []byte, ok bool, err error) {
	switch v := body.(type) {
	case *Task:
		b, err = appendTask(b, v)
	case Task:
		b, err = appendTask(b, &v)
	case *Events:
		b, err = appendEvents(b, v.Events)
	case Events:
		b, err = appendEvents(b, v.Events)
	case *Event:
		b, err = appendEvent(b, v)
	case Event:
		b, err = appendEvent(b, &v)
	default:
		return b, false, nil
	}
	return b, true, err
}

// decodeBody decodes a body into out: by hand for a Task, an Event or an
// Events batch, by the library for anything else.
func decodeBody(body []byte, out any) error {
	r := &reader{b: body}
	switch v := out.(type) {
	case *Task:
		return decodeTask(r, v)
	case *Events:
		return decodeEvents(r, v)
	case *Event:
		return decodeEvent(r, v, &Event{})
	}
	return msgpack.Unmarshal(body, out)
}

// Value is a user value: JSON text. Skein carries user values as JSON
// inside msgpack so that they come out exactly as they went in (integers
// stay integers, key order is kept) whatever language produced them.
type Value = json.RawMessage
