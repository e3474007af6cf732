package storage

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Patience paces the tries of a read that rides out a storage outage: a
// run of failures is tried again after pauses from RideOutFirst doubling
// up to RideOutMax, for up to RideOut in all. Progress (Mended) ends the
// run, so a long read may ride out several outages. The zero value is
// ready; it is not safe for concurrent use.
type Patience struct {
	// OnRetry, when set, hears of each failure that is tried again, and
	// of the pause before the next try.
	OnRetry func(err error, wait time.Duration)

	failing time.Time // when the current run of failures began (zero: none)
	wait    time.Duration
}

// Again pauses after err and reports whether to try again: not for a
// Lasting error, nor once the run of failures has gone on for RideOut,
// nor once ctx has ended.
func (p *Patience) Again(ctx context.Context, err error) bool {
	if Lasting(err) || ctx.Err() != nil {
		return false
	}
	now := time.Now()
	if p.failing.IsZero() {
		p.failing, p.wait = now, RideOutFirst
	}
	if now.Sub(p.failing)+p.wait > RideOut {
		return false
	}
	if p.OnRetry != nil {
		p.OnRetry(err, p.wait)
	}
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	p.wait = min(2*p.wait, RideOutMax)
	return true
}

// Mended records progress: the next failure starts a new run.
func (p *Patience) Mended() { p.failing = time.Time{} }

// GaveUp is err after a run of failures that Again refused to go on with:
// it says how long the tries went on.
func (p *Patience) GaveUp(ctx context.Context, err error) error {
	if !p.failing.IsZero() && !Lasting(err) && ctx.Err() == nil {
		return fmt.Errorf("%w (still failing after %v of tries)", err, time.Since(p.failing).Round(100*time.Millisecond))
	}
	return err
}

// OpenPatiently is Open riding out an outage: opening is tried again as
// Patience says, and a body cut midway is read again from the byte
// reached; onRetry (may be nil) hears of each try again. For an artifact
// written once (a job's stored input): a resumed read does not check that
// the object is still the one it began on.
func (a *Artifacts) OpenPatiently(ctx context.Context, ref string, onRetry func(err error, wait time.Duration)) (io.ReadCloser, error) {
	key, err := a.parseRef(ref)
	if err != nil {
		return nil, err
	}
	r := &patientReader{ctx: ctx, store: a.store, bucket: a.base.Bucket, key: key, patience: Patience{OnRetry: onRetry}}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// patientReader reads an object from its start, opening it again from
// the byte reached when a read fails.
type patientReader struct {
	ctx         context.Context
	store       Store
	bucket, key string
	pos         int64
	body        io.ReadCloser
	patience    Patience
}

func (r *patientReader) open() error {
	for {
		body, err := r.store.Get(r.ctx, r.bucket, r.key, r.pos, -1)
		if err == nil {
			r.body = body
			return nil
		}
		if !r.patience.Again(r.ctx, err) {
			return r.patience.GaveUp(r.ctx, err)
		}
	}
}

func (r *patientReader) Read(p []byte) (int, error) {
	for {
		if r.body == nil {
			if err := r.open(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if n > 0 {
			r.patience.Mended()
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		// Cut midway: what came is good; the rest is read again from
		// the byte reached.
		r.body.Close()
		r.body = nil
		if n > 0 {
			return n, nil
		}
		if !r.patience.Again(r.ctx, err) {
			return 0, r.patience.GaveUp(r.ctx, err)
		}
	}
}

func (r *patientReader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

// PutReaderPatiently is PutReader of a reader of unknown size, riding out
// an outage: a remote store needs the whole body before it sends it (it
// buffers a reader of unknown size), so the body is read into memory
// first and its upload tried again as Patience says; onRetry (may be nil)
// hears of each try again. A local store streams the reader to its file
// once (a disk has no outage to ride out).
func (a *Artifacts) PutReaderPatiently(ctx context.Context, job, name string, r io.Reader, onRetry func(err error, wait time.Duration)) (string, error) {
	if _, local := a.store.(*Local); local {
		return a.PutReader(ctx, job, name, r, -1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	p := Patience{OnRetry: onRetry}
	for {
		ref, err := a.Put(ctx, job, name, data)
		if err == nil {
			return ref, nil
		}
		if !p.Again(ctx, err) {
			return "", p.GaveUp(ctx, err)
		}
	}
}
