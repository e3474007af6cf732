package wire

import (
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
	KindTask   Kind = "task"
	KindEvent  Kind = "event"
	KindJob    Kind = "job"    // a submitted job spec, on the job log
	KindEnd    Kind = "end"    // a job's terminal record, on the job log
	KindCancel Kind = "cancel" // a cancel notice (broadcast)
	KindReq    Kind = "req"    // an API request
	KindResp   Kind = "resp"   // an API response
	KindFeed   Kind = "feed"   // a map result forwarded to a reducer
)

// envelope is the outer frame of every Skein message.
type envelope struct {
	V    int                `msgpack:"v"`
	Kind Kind               `msgpack:"k"`
	Body msgpack.RawMessage `msgpack:"b"`
}

// Encode frames body as an envelope of kind.
func Encode(kind Kind, body any) ([]byte, error) {
	b, err := msgpack.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", kind, err)
	}
	return msgpack.Marshal(envelope{V: Version, Kind: kind, Body: b})
}

// Peek returns the kind of an envelope without decoding its body.
func Peek(data []byte) (Kind, error) {
	var env envelope
	if err := msgpack.Unmarshal(data, &env); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.V != Version {
		return "", fmt.Errorf("%w: got %d, want %d", ErrVersion, env.V, Version)
	}
	return env.Kind, nil
}

// Decode checks the envelope's version and kind and decodes its body into
// out.
func Decode(data []byte, kind Kind, out any) error {
	var env envelope
	if err := msgpack.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.V != Version {
		return fmt.Errorf("%w: got %d, want %d", ErrVersion, env.V, Version)
	}
	if env.Kind != kind {
		return fmt.Errorf("%w: got a %q message, want %q", ErrMalformed, env.Kind, kind)
	}
	if err := msgpack.Unmarshal(env.Body, out); err != nil {
		return fmt.Errorf("%w: %s body: %v", ErrMalformed, kind, err)
	}
	return nil
}

// Value is a user value: JSON text. Skein carries user values as JSON
// inside msgpack so that they come out exactly as they went in (integers
// stay integers, key order is kept) whatever language produced them.
type Value = json.RawMessage
