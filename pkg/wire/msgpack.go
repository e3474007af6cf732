package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// appender writes msgpack to a byte slice, with the encodings the library
// picks for the same calls (see codec.go), and keeps the first error (only
// the library's nested values can fail).
type appender struct {
	b   []byte
	err error
}

func (w *appender) mapLen(n int)   { w.b = appendLen(w.b, n, 0x80, 0xde, 0xdf) }
func (w *appender) arrayLen(n int) { w.b = appendLen(w.b, n, 0x90, 0xdc, 0xdd) }

// appendLen writes a map's or array's length: fix (under 16), 16 or 32 bit.
func appendLen(b []byte, n int, fix, c16, c32 byte) []byte {
	switch {
	case n < 16:
		return append(b, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
}

func (w *appender) key(k string) { w.string(k) }

func (w *appender) string(s string) {
	if n := len(s); n < 32 {
		w.b = append(w.b, 0xa0|byte(n))
	} else {
		w.b = appendSize(w.b, n, 0xd9, 0xda, 0xdb)
	}
	w.b = append(w.b, s...)
}

// appendSize writes the code and the length of a string or byte string
// longer than a fixed string: 8, 16 or 32 bit.
func appendSize(b []byte, n int, c8, c16, c32 byte) []byte {
	switch {
	case n < 256:
		return append(b, c8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
}

func (w *appender) str(k, v string) {
	w.key(k)
	w.string(v)
}

// bin writes a byte string (nil as nil).
func (w *appender) bin(v []byte) {
	if v == nil {
		w.b = append(w.b, 0xc0)
		return
	}
	w.b = append(appendSize(w.b, len(v), 0xc4, 0xc5, 0xc6), v...)
}

// int writes an int field as reflection does (the shortest encoding).
func (w *appender) int(k string, v int64) {
	w.key(k)
	switch {
	case v >= 0:
		w.uint(uint64(v))
	case v >= -32:
		w.b = append(w.b, byte(v))
	case v >= math.MinInt8:
		w.b = append(w.b, 0xd0, byte(v))
	case v >= math.MinInt16:
		w.b = binary.BigEndian.AppendUint16(append(w.b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		w.b = binary.BigEndian.AppendUint32(append(w.b, 0xd2), uint32(v))
	default:
		w.b = binary.BigEndian.AppendUint64(append(w.b, 0xd3), uint64(v))
	}
}

func (w *appender) uint(v uint64) {
	switch {
	case v <= math.MaxInt8:
		w.b = append(w.b, byte(v))
	case v <= math.MaxUint8:
		w.b = append(w.b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		w.b = binary.BigEndian.AppendUint16(append(w.b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		w.b = binary.BigEndian.AppendUint32(append(w.b, 0xce), uint32(v))
	default:
		w.b = binary.BigEndian.AppendUint64(append(w.b, 0xcf), v)
	}
}

// int64 writes an int64 field as reflection does (always 9 bytes).
func (w *appender) int64(k string, v int64) {
	w.key(k)
	w.b = binary.BigEndian.AppendUint64(append(w.b, 0xd3), uint64(v))
}

// uint64 writes a uint64 as reflection does (always 9 bytes).
func (w *appender) uint64(v uint64) {
	w.b = binary.BigEndian.AppendUint64(append(w.b, 0xcf), v)
}

func (w *appender) any(k string, v any) {
	w.key(k)
	if w.err != nil {
		return
	}
	w.b, w.err = libEncode(w.b, v)
}

func (w *appender) values(vs []Value) {
	w.arrayLen(len(vs))
	for _, v := range vs {
		w.bin(v)
	}
}

// errShort reports data that ends inside a value.
var errShort = errors.New("msgpack: unexpected end of data")

// reader reads msgpack from a byte slice, accepting what the library's
// Decoder accepts for the same calls (nil for an empty value, a string's
// or a byte string's codes for either).
type reader struct {
	b   []byte
	off int
}

func (r *reader) code() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// next returns the next n bytes.
func (r *reader) next(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errShort
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) uintN(n int) (uint64, error) {
	s, err := r.next(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(s[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(s)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(s)), nil
	}
	return binary.BigEndian.Uint64(s), nil
}

// length reads a map's or array's length; nil is -1.
func (r *reader) length(fix, c16, c32 byte, what string) (int, error) {
	c, err := r.code()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c == 0xc0:
		return -1, nil
	case c&0xf0 == fix:
		return int(c & 0x0f), nil
	case c == c16:
		n, err = r.uintN(2)
	case c == c32:
		n, err = r.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding %s length", c, what)
	}
	return int(n), err
}

func (r *reader) mapLen() (int, error) { return r.length(0x80, 0xde, 0xdf, "map") }

// fields reads a map whose keys are strings: f gets each key with r at
// its value, and reads or skips that value. Errors say what was read
// and, from f, under which key.
func (r *reader) fields(what string, f func(key []byte) error) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	for range max(n, 0) {
		key, err := r.strBytes()
		if err != nil {
			return fmt.Errorf("%s key: %w", what, err)
		}
		if err := f(key); err != nil {
			return fmt.Errorf("%s field %q: %w", what, key, err)
		}
	}
	return nil
}
func (r *reader) arrayLen() (int, error) { return r.length(0x90, 0xdc, 0xdd, "array") }

// strBytes reads a string or byte string without copying it: the result
// aliases the data. Nil is an empty slice.
func (r *reader) strBytes() ([]byte, error) {
	b, _, err := r.strOrNil()
	return b, err
}

func (r *reader) strOrNil() (b []byte, isNil bool, err error) {
	c, err := r.code()
	if err != nil {
		return nil, false, err
	}
	var n uint64
	switch {
	case c == 0xc0:
		return nil, true, nil
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n, err = r.uintN(1)
	case c == 0xda || c == 0xc5:
		n, err = r.uintN(2)
	case c == 0xdb || c == 0xc6:
		n, err = r.uintN(4)
	default:
		return nil, false, fmt.Errorf("msgpack: invalid code=%x decoding string/bytes length", c)
	}
	if err != nil {
		return nil, false, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, false, errShort
	}
	b, err = r.next(int(n))
	return b, false, err
}

func (r *reader) str() (string, error) {
	b, err := r.strBytes()
	return string(b), err
}

// bytes reads a byte string into a copy of its own; nil stays nil.
func (r *reader) bytes() ([]byte, error) {
	b, isNil, err := r.strOrNil()
	if err != nil || isNil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// int reads an integer of any width, as the library's DecodeInt64.
func (r *reader) int() (int64, error) {
	c, err := r.code()
	if err != nil {
		return 0, err
	}
	switch {
	case c == 0xc0:
		return 0, nil
	case c <= 0x7f || c >= 0xe0:
		return int64(int8(c)), nil
	}
	var n uint64
	switch c {
	case 0xcc, 0xd0:
		n, err = r.uintN(1)
		if c == 0xd0 {
			return int64(int8(n)), err
		}
	case 0xcd, 0xd1:
		n, err = r.uintN(2)
		if c == 0xd1 {
			return int64(int16(n)), err
		}
	case 0xce, 0xd2:
		n, err = r.uintN(4)
		if c == 0xd2 {
			return int64(int32(n)), err
		}
	case 0xcf, 0xd3:
		n, err = r.uintN(8)
	default:
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding int64", c)
	}
	return int64(n), err
}

func (r *reader) intField() (int, error) {
	n, err := r.int()
	return int(n), err
}

// uint reads an integer as the library's DecodeUint64 (a negative one
// wraps around, as there).
func (r *reader) uint() (uint64, error) {
	n, err := r.int()
	return uint64(n), err
}

func (r *reader) bool() (bool, error) {
	c, err := r.code()
	if err != nil {
		return false, err
	}
	switch c {
	case 0xc0, 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	}
	return false, fmt.Errorf("msgpack: invalid code=%x decoding bool", c)
}

func (r *reader) values() ([]Value, error) {
	n, err := r.arrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n > len(r.b)-r.off {
		return nil, errShort
	}
	vs := make([]Value, n)
	for i := range vs {
		if vs[i], err = r.bytes(); err != nil {
			return nil, err
		}
	}
	return vs, nil
}

// lib decodes the next value into v with the library (nested, rare
// fields).
func (r *reader) lib(v any) error {
	br := bytes.NewReader(r.b[r.off:])
	d := msgpack.GetDecoder()
	defer msgpack.PutDecoder(d)
	d.Reset(br)
	err := d.Decode(v)
	r.off = len(r.b) - br.Len()
	return err
}

// skip passes over the next value, nested or not, without allocating
// (the library's Skip reads what it skips into a buffer).
func (r *reader) skip() error {
	for pending := 1; pending > 0; pending-- {
		c, err := r.code()
		if err != nil {
			return err
		}
		var n uint64 // bytes to pass over
		var items int
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c&0xe0 == 0xa0:
			n = uint64(c & 0x1f)
		case c&0xf0 == 0x80:
			items = 2 * int(c&0x0f)
		case c&0xf0 == 0x90:
			items = int(c & 0x0f)
		default:
			switch c {
			case 0xcc, 0xd0:
				n = 1
			case 0xcd, 0xd1, 0xd4:
				n = 2
			case 0xd5:
				n = 3
			case 0xce, 0xd2, 0xca:
				n = 4
			case 0xd6:
				n = 5
			case 0xcf, 0xd3, 0xcb:
				n = 8
			case 0xd7:
				n = 9
			case 0xd8:
				n = 17
			case 0xd9, 0xc4:
				n, err = r.uintN(1)
			case 0xda, 0xc5:
				n, err = r.uintN(2)
			case 0xdb, 0xc6:
				n, err = r.uintN(4)
			case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32: a length, a type byte, the data
				n, err = r.uintN(1 << (c - 0xc7))
				n++
			case 0xdc, 0xdd:
				var l uint64
				l, err = r.uintN(2 << (c - 0xdc))
				items = int(l)
			case 0xde, 0xdf:
				var l uint64
				l, err = r.uintN(2 << (c - 0xde))
				items = 2 * int(l)
			default:
				return fmt.Errorf("msgpack: unknown code %x", c)
			}
			if err != nil {
				return err
			}
		}
		if n > uint64(len(r.b)-r.off) {
			return errShort
		}
		r.off += int(n)
		// Every item takes at least a byte.
		if pending+items > len(r.b)-r.off+1 {
			return errShort
		}
		pending += items
	}
	return nil
}
