package client

import (
	"fmt"
	"strconv"
)

// scanner checks JSON text a byte at a time without keeping it (after
// encoding/json's scanner, which needs the whole text): StreamInput
// passes a file of any size through it on the way to the bus. It knows
// the offset of every byte, so an error says exactly where, and which
// element of the top-level list (or member of the top-level object) it
// is in.
type scanner struct {
	state int
	stack []byte // open containers, '[' or '{'
	off   int64  // offset of the next byte
	// elem counts the top-level container's elements (or members) begun.
	elem int
	lit  string // the rest of a literal being read
	hex  int    // hex digits of a \u escape still to come
	key  bool   // the string being read is an object key
	err  error
}

const (
	sValue      = iota // a value must come (white space first)
	sValueOrEnd        // after '[': a value or ']'
	sKeyOrEnd          // after '{': a key or '}'
	sKey               // after ',' in an object: a key
	sColon             // after a key: ':'
	sAfter             // after a value: ',', the container's end, or (top level) the end
	sString
	sEscape
	sMinus   // after '-'
	sZero    // after a leading 0
	sInt     // in the integer digits
	sDot     // after '.'
	sFrac    // in the fraction digits
	sE       // after 'e' or 'E'
	sESign   // after the exponent's sign
	sExp     // in the exponent digits
	sLiteral // in true, false or null
	sEnd     // the top-level value is complete
	sBad     // an error was found
	stateHex // in a \u escape
)

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

func (s *scanner) fail(c byte, context string) error {
	s.state = sBad
	s.err = &InputError{Offset: s.off, Element: s.element(), Msg: "invalid character " + quoteChar(c) + " " + context}
	return s.err
}

// element is the top-level element the scanner is in, or -1.
func (s *scanner) element() int {
	if len(s.stack) == 0 || s.elem == 0 {
		return -1
	}
	return s.elem - 1
}

// write checks p, the next bytes of the text.
func (s *scanner) write(p []byte) error {
	if s.err != nil {
		return s.err
	}
	for _, c := range p {
		if err := s.step(c); err != nil {
			return err
		}
		s.off++
	}
	return nil
}

// end checks that the text is complete.
func (s *scanner) end() error {
	if s.err != nil {
		return s.err
	}
	switch s.state {
	case sEnd:
		return nil
	case sZero, sInt, sFrac, sExp:
		if len(s.stack) == 0 {
			return nil // a number alone ends at the end of the text
		}
	}
	msg := "unexpected end of input"
	if s.off == 0 || (s.state == sValue && len(s.stack) == 0) {
		msg = "empty input"
	}
	s.err = &InputError{Offset: s.off, Element: s.element(), Msg: msg}
	return s.err
}

// beginValue starts a value with c.
func (s *scanner) beginValue(c byte) error {
	if len(s.stack) == 1 && s.stack[0] == '[' {
		s.elem++
	}
	switch {
	case c == '{' || c == '[':
		s.stack = append(s.stack, c)
		if c == '{' {
			s.state = sKeyOrEnd
		} else {
			s.state = sValueOrEnd
		}
	case c == '"':
		s.state, s.key = sString, false
	case c == '-':
		s.state = sMinus
	case c == '0':
		s.state = sZero
	case c >= '1' && c <= '9':
		s.state = sInt
	case c == 't':
		s.state, s.lit = sLiteral, "rue"
	case c == 'f':
		s.state, s.lit = sLiteral, "alse"
	case c == 'n':
		s.state, s.lit = sLiteral, "ull"
	default:
		return s.fail(c, "looking for beginning of value")
	}
	return nil
}

// endValue is called when a value ends (before the byte after it).
func (s *scanner) endValue() {
	if len(s.stack) == 0 {
		s.state = sEnd
	} else {
		s.state = sAfter
	}
}

func (s *scanner) step(c byte) error {
	switch s.state {
	case sValue:
		if isWS(c) {
			return nil
		}
		return s.beginValue(c)
	case sValueOrEnd:
		if isWS(c) {
			return nil
		}
		if c == ']' {
			return s.close(c)
		}
		return s.beginValue(c)
	case sKeyOrEnd, sKey:
		if isWS(c) {
			return nil
		}
		if c == '}' && s.state == sKeyOrEnd {
			return s.close(c)
		}
		if c != '"' {
			return s.fail(c, "looking for beginning of object key string")
		}
		if len(s.stack) == 1 {
			s.elem++
		}
		s.state, s.key = sString, true
	case sColon:
		if isWS(c) {
			return nil
		}
		if c != ':' {
			return s.fail(c, "after object key")
		}
		s.state = sValue
	case sAfter:
		if isWS(c) {
			return nil
		}
		top := s.stack[len(s.stack)-1]
		switch {
		case c == ',' && top == '[':
			s.state = sValue
		case c == ',':
			s.state = sKey
		case c == ']' && top == '[', c == '}' && top == '{':
			return s.close(c)
		case top == '[':
			return s.fail(c, "after array element")
		default:
			return s.fail(c, "after object key:value pair")
		}
	case sString:
		switch {
		case c == '"':
			if s.key {
				s.state = sColon
			} else {
				s.endValue()
			}
		case c == '\\':
			s.state = sEscape
		case c < 0x20:
			return s.fail(c, "in string literal")
		}
	case sEscape:
		switch c {
		case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
			s.state = sString
		case 'u':
			s.state, s.hex = stateHex, 4
		default:
			return s.fail(c, "in string escape code")
		}
	case stateHex:
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return s.fail(c, "in \\u hexadecimal character escape")
		}
		if s.hex--; s.hex == 0 {
			s.state = sString
		}
	case sMinus:
		switch {
		case c == '0':
			s.state = sZero
		case c >= '1' && c <= '9':
			s.state = sInt
		default:
			return s.fail(c, "in numeric literal")
		}
	case sZero, sInt:
		switch {
		case c >= '0' && c <= '9' && s.state == sInt:
		case c == '.':
			s.state = sDot
		case c == 'e' || c == 'E':
			s.state = sE
		default:
			return s.afterNumber(c)
		}
	case sDot:
		if c < '0' || c > '9' {
			return s.fail(c, "after decimal point in numeric literal")
		}
		s.state = sFrac
	case sFrac:
		switch {
		case c >= '0' && c <= '9':
		case c == 'e' || c == 'E':
			s.state = sE
		default:
			return s.afterNumber(c)
		}
	case sE:
		switch {
		case c == '+' || c == '-':
			s.state = sESign
		case c >= '0' && c <= '9':
			s.state = sExp
		default:
			return s.fail(c, "in exponent of numeric literal")
		}
	case sESign:
		if c < '0' || c > '9' {
			return s.fail(c, "in exponent of numeric literal")
		}
		s.state = sExp
	case sExp:
		if c < '0' || c > '9' {
			return s.afterNumber(c)
		}
	case sLiteral:
		if c != s.lit[0] {
			return s.fail(c, "in literal")
		}
		if s.lit = s.lit[1:]; s.lit == "" {
			s.endValue()
		}
	case sEnd:
		if !isWS(c) {
			s.state = sBad
			s.err = &InputError{Offset: s.off, Element: -1, Msg: "unexpected data after the JSON value"}
			return s.err
		}
	case sBad:
		return s.err
	default:
		panic(fmt.Sprintf("scanner: state %d", s.state))
	}
	return nil
}

// afterNumber ends a number at c, which then goes on as the byte after a
// value.
func (s *scanner) afterNumber(c byte) error {
	s.endValue()
	return s.step(c)
}

// close ends the innermost container with c.
func (s *scanner) close(c byte) error {
	s.stack = s.stack[:len(s.stack)-1]
	s.endValue()
	return nil
}
