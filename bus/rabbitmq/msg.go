package rabbitmq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
)

// Headers the bus sets itself. Keys that start with "skein-" or "x-" are
// reserved: they are not handed back in Message.Header.
const (
	hdrKey      = "skein-key"        // Message.Key
	hdrTime     = "skein-time"       // publish time, Unix nanoseconds
	hdrAttempts = "skein-attempts"   // deliveries before this copy was republished
	hdrError    = "skein-error"      // RPC handler error
	hdrReason   = "skein-reason"     // why a message was dead-lettered
	hdrQueue    = "skein-queue"      // queue a dead letter came from
	hdrDeadAt   = "skein-dead-at"    // when it was dead-lettered, RFC 3339
	hdrAttempt  = "skein-attempt"    // attempt on which it was dead-lettered
	hdrSubject  = "skein-subject"    // routing key a dead letter had
	hdrDelivCnt = "x-delivery-count" // quorum queues: returns so far
	hdrOffset   = "x-stream-offset"  // stream queues: the message's offset
	hdrNonce    = "skein-nonce"      // PublishSeq: finds the message when read back
)

// reserved reports whether a header key belongs to the bus or the broker.
func reserved(k string) bool {
	return strings.HasPrefix(k, "skein-") || strings.HasPrefix(k, "x-")
}

// validSubject checks a dotted subject (no wildcards).
func validSubject(what, s string) error {
	if s == "" || len(s) > 255 {
		return fmt.Errorf("rabbitmq: %s %q: want 1 to 255 characters", what, s)
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*># \t\r\n") {
			return fmt.Errorf("rabbitmq: %s %q: want dot-separated tokens without spaces or wildcards", what, s)
		}
	}
	return nil
}

// validPattern checks a subject pattern with "*" and a trailing ">".
func validPattern(p string) error {
	if p == "" || len(p) > 255 {
		return fmt.Errorf("rabbitmq: pattern %q: want 1 to 255 characters", p)
	}
	toks := strings.Split(p, ".")
	for i, tok := range toks {
		switch {
		case tok == "*":
		case tok == ">":
			if i != len(toks)-1 {
				return fmt.Errorf("rabbitmq: pattern %q: '>' must be the last token", p)
			}
		case tok == "" || strings.ContainsAny(tok, "*># \t\r\n"):
			return fmt.Errorf("rabbitmq: pattern %q: bad token %q", p, tok)
		}
	}
	return nil
}

// match reports whether subject matches a NATS-style pattern.
func match(pattern, subject string) bool {
	return matchTokens(strings.Split(pattern, "."), strings.Split(subject, "."))
}

// matchTokens is match on a pattern and a subject split at their dots.
func matchTokens(pt, st []string) bool {
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// bindingKey turns a NATS-style pattern into an AMQP topic binding key.
func bindingKey(pattern string) string {
	toks := strings.Split(pattern, ".")
	if toks[len(toks)-1] == ">" {
		// AMQP "#" matches zero or more words, NATS ">" one or more; the
		// client filters the zero-word case with match.
		toks[len(toks)-1] = "#"
	}
	return strings.Join(toks, ".")
}

func (b *Bus) checkSize(what string, n int) error {
	if n > b.opts.MaxMessageSize {
		return fmt.Errorf("rabbitmq: %s of %d bytes exceeds the limit of %d: %w", what, n, b.opts.MaxMessageSize, bus.ErrTooLarge)
	}
	return nil
}

// publishing builds an AMQP message from a bus message.
func publishing(m bus.Message, persistent bool) amqp.Publishing {
	h := amqp.Table{}
	for k, v := range m.Header {
		if !reserved(k) {
			h[k] = v
		}
	}
	if m.Key != "" {
		h[hdrKey] = m.Key
	}
	now := time.Now()
	h[hdrTime] = now.UnixNano()
	p := amqp.Publishing{
		Headers:     h,
		Body:        m.Data,
		MessageId:   m.ID,
		Timestamp:   now,
		ContentType: "application/octet-stream",
	}
	if persistent {
		p.DeliveryMode = amqp.Persistent
	}
	return p
}

// message turns a delivery into a bus message.
func message(d *amqp.Delivery, subject string) bus.Message {
	m := bus.Message{Subject: subject, Data: d.Body, ID: d.MessageId}
	for k, v := range d.Headers {
		if reserved(k) {
			continue
		}
		if m.Header == nil {
			m.Header = map[string]string{}
		}
		switch v := v.(type) {
		case string:
			m.Header[k] = v
		case []byte:
			m.Header[k] = string(v)
		default:
			m.Header[k] = fmt.Sprint(v)
		}
	}
	m.Key = headerString(d.Headers, hdrKey)
	if n, ok := headerInt(d.Headers, hdrTime); ok {
		m.Time = time.Unix(0, n)
	} else if !d.Timestamp.IsZero() {
		m.Time = d.Timestamp
	}
	return m
}

func headerString(h amqp.Table, k string) string {
	switch v := h[k].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func headerInt(h amqp.Table, k string) (int64, bool) {
	switch v := h[k].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case int:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}
