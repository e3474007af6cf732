package partition

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// DefaultMaxItems bounds the number of items one Expand may produce, so
// that a tiny chunk_size over a large object fails with a clear error
// instead of exhausting memory.
const DefaultMaxItems = 1_000_000

// ObjKey is the keyword argument that holds a storage URL in an object
// element of iterdata.
const ObjKey = "obj"

// ErrNoObjects is returned for a bucket or prefix that matches no object.
var ErrNoObjects = errors.New("matches no object")

// ErrOptions is wrapped by errors about chunk_size and chunk_n.
var ErrOptions = errors.New("bad chunking options")

// Options chooses how objects are split. Zero values mean "not set".
type Options struct {
	// ChunkSize splits each object into chunks of about this many bytes.
	ChunkSize int64
	// ChunkN splits each object into this many chunks.
	ChunkN int
	// MaxItems bounds the result (0: DefaultMaxItems).
	MaxItems int
}

// Validate rejects negative values and both options set.
func (o Options) Validate() error {
	var errs []error
	if o.ChunkSize < 0 {
		errs = append(errs, fmt.Errorf("%w: chunk_size must be > 0 bytes, got %d", ErrOptions, o.ChunkSize))
	}
	if o.ChunkN < 0 {
		errs = append(errs, fmt.Errorf("%w: chunk_n must be > 0, got %d", ErrOptions, o.ChunkN))
	}
	if o.ChunkSize != 0 && o.ChunkN != 0 {
		errs = append(errs, fmt.Errorf("%w: chunk_size and chunk_n are exclusive: set one of them", ErrOptions))
	}
	if o.MaxItems < 0 {
		errs = append(errs, fmt.Errorf("%w: max_items must be >= 0, got %d", ErrOptions, o.MaxItems))
	}
	return errors.Join(errs...)
}

// NewOptions builds Options from flags that may be absent (nil), so that
// an explicit chunk_size 0 or chunk_n 0 is an error rather than "unset".
func NewOptions(chunkSize *int64, chunkN *int) (Options, error) {
	var o Options
	var errs []error
	if chunkSize != nil {
		if *chunkSize <= 0 {
			errs = append(errs, fmt.Errorf("%w: chunk_size must be > 0 bytes, got %d", ErrOptions, *chunkSize))
		}
		o.ChunkSize = *chunkSize
	}
	if chunkN != nil {
		if *chunkN <= 0 {
			errs = append(errs, fmt.Errorf("%w: chunk_n must be > 0, got %d", ErrOptions, *chunkN))
		}
		o.ChunkN = *chunkN
	}
	if chunkSize != nil && chunkN != nil {
		errs = append(errs, fmt.Errorf("%w: chunk_size and chunk_n are exclusive: set one of them", ErrOptions))
	}
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	return o, nil
}

func (o Options) chunking() bool { return o.ChunkSize != 0 || o.ChunkN != 0 }

// Item is one map task's input.
type Item struct {
	// Source is the index of the iterdata element the item comes from.
	Source int
	// Obj is the object slice to read; nil for an element that names no
	// storage.
	Obj *wire.Object
	// Value is the element itself when Obj is nil (it then follows the
	// usual iterdata rules: a scalar is the first argument, an object
	// keyword arguments).
	Value wire.Value
	// Kwargs are the other keyword arguments of an object element that
	// holds its URL under "obj" (nil otherwise).
	Kwargs map[string]wire.Value
}

// NamesStorage reports whether an iterdata element names storage: a JSON
// string with a storage scheme, or an object with such a string under
// "obj".
func NamesStorage(elem wire.Value) bool {
	_, _, ok, _ := storageElem(elem)
	return ok
}

// storageElem decodes an element: its URL string and other kwargs if it
// names storage.
func storageElem(elem wire.Value) (string, map[string]wire.Value, bool, error) {
	t := bytes.TrimSpace(elem)
	if len(t) == 0 {
		return "", nil, false, nil
	}
	switch t[0] {
	case '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil || !storage.HasScheme(s) {
			return "", nil, false, nil
		}
		return s, nil, true, nil
	case '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(t, &m); err != nil {
			return "", nil, false, nil
		}
		raw, ok := m[ObjKey]
		if !ok {
			return "", nil, false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || !storage.HasScheme(s) {
			return "", nil, false, fmt.Errorf("%q must be a storage URL string such as \"cos://bucket/prefix/\", got %s", ObjKey, short(raw))
		}
		delete(m, ObjKey)
		kw := make(map[string]wire.Value, len(m))
		for k, v := range m {
			kw[k] = wire.Value(v)
		}
		return s, kw, true, nil
	}
	return "", nil, false, nil
}

func short(v []byte) string {
	if len(v) > 60 {
		return string(v[:60]) + "…"
	}
	return string(v)
}

// Expand turns iterdata into map task inputs. Each element that names
// storage becomes one item per object (a bucket or a prefix ending in '/'
// expands to every object under it; any other URL is one object), or one
// item per chunk when opt sets ChunkSize or ChunkN. Other elements become
// one item each, unchanged.
//
// Order: iterdata order; within an element, objects in key order
// (byte-wise, as S3 lists them); within an object, part order. Group
// numbers the input objects of the whole job from 0 in that order.
//
// Errors name the iterdata position and the URL: a malformed URL, a
// missing bucket or object, a prefix that matches nothing, bad options,
// chunking options without any element that names storage.
func Expand(ctx context.Context, r *storage.Resolver, iterdata []wire.Value, opt Options) ([]Item, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	maxItems := opt.MaxItems
	if maxItems == 0 {
		maxItems = DefaultMaxItems
	}
	type elem struct {
		url    storage.URL
		kwargs map[string]wire.Value
		store  storage.Store
		infos  []storage.Info
		err    error
	}
	elems := make([]*elem, len(iterdata))
	any := false
	for i, v := range iterdata {
		raw, kw, ok, err := storageElem(v)
		if err != nil {
			return nil, fmt.Errorf("iterdata[%d]: %w", i, err)
		}
		if !ok {
			continue
		}
		u, st, err := r.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("iterdata[%d]: %w", i, err)
		}
		elems[i] = &elem{url: u, kwargs: kw, store: st}
		any = true
	}
	if !any && opt.chunking() {
		return nil, fmt.Errorf("%w: chunk_size/chunk_n set, but no iterdata element names storage (cos://…, s3://…, local:///…, https://…)", ErrOptions)
	}

	// Look the objects up, a few elements at a time.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, e := range elems {
		if e == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e.infos, e.err = lookup(ctx, e.store, e.url)
		}()
	}
	wg.Wait()

	var items []Item
	group := 0
	for i, v := range iterdata {
		e := elems[i]
		if e == nil {
			items = append(items, Item{Source: i, Value: v})
			continue
		}
		if e.err != nil {
			return nil, fmt.Errorf("iterdata[%d]: %w", i, e.err)
		}
		for _, info := range e.infos {
			if int64(len(items))+numParts(info.Size, opt) > int64(maxItems) {
				return nil, fmt.Errorf("%w: %s gives more than %d tasks; raise chunk_size or lower chunk_n", ErrOptions, e.url, maxItems)
			}
			ranges := Ranges(info.Size, opt)
			ou := e.url.Object(info.Key)
			etag := ""
			if storage.Pinnable(info.ETag) {
				etag = info.ETag
			}
			for p, rg := range ranges {
				items = append(items, Item{
					Source: i,
					Obj: &wire.Object{
						URL: ou.String(), Store: storeName(ou), Bucket: ou.Bucket, Key: ou.Key,
						Part: p, Parts: len(ranges), Start: rg[0], End: rg[1], Size: info.Size, Group: group, ETag: etag,
					},
					Kwargs: e.kwargs,
				})
			}
			group++
		}
	}
	return items, nil
}

func storeName(u storage.URL) string {
	if u.IsHTTP() {
		return "http"
	}
	return u.Scheme
}

// lookup lists a prefix or heads one object.
func lookup(ctx context.Context, s storage.Store, u storage.URL) ([]storage.Info, error) {
	if u.IsPrefix() {
		infos, err := s.List(ctx, u.Bucket, u.Key)
		if err != nil {
			return nil, err
		}
		if len(infos) == 0 {
			return nil, fmt.Errorf("%s: %w", u, ErrNoObjects)
		}
		return infos, nil
	}
	info, err := s.Head(ctx, u.Bucket, u.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w (to map over a prefix, end the URL with '/')", err)
	}
	if err != nil {
		return nil, err
	}
	info.Key = u.Key
	return []storage.Info{info}, nil
}

func numParts(size int64, opt Options) int64 {
	switch {
	case opt.ChunkSize > 0:
		return max(1, (size+opt.ChunkSize-1)/opt.ChunkSize)
	case opt.ChunkN > 0:
		return int64(opt.ChunkN)
	}
	return 1
}

// Ranges returns the nominal byte ranges [start, end) of an object of size
// bytes: with ChunkSize, ceil(size/ChunkSize) ranges of ChunkSize bytes
// (the last shorter); with ChunkN, exactly ChunkN ranges of near-equal
// length (empty ones when size < ChunkN); otherwise one range. An empty
// object gives one empty range (ChunkN: ChunkN empty ranges). The ranges
// tile [0, size). OpenChunk aligns them on lines when reading.
func Ranges(size int64, opt Options) [][2]int64 {
	switch {
	case opt.ChunkSize > 0:
		n := numParts(size, opt)
		out := make([][2]int64, n)
		for i := range n {
			out[i] = [2]int64{i * opt.ChunkSize, min((i+1)*opt.ChunkSize, size)}
		}
		return out
	case opt.ChunkN > 0:
		n := int64(opt.ChunkN)
		out := make([][2]int64, n)
		q, rem := size/n, size%n
		at := func(i int64) int64 { return q*i + rem*i/n } // floor(i*size/n) without overflow
		for i := range n {
			out[i] = [2]int64{at(i), at(i + 1)}
		}
		return out
	}
	return [][2]int64{{0, size}}
}
