package metrics

import (
	"math"
	"sync/atomic"
)

// Histogram counts observations in fixed buckets without locks or
// allocations: Observe is a few atomic adds, safe for concurrent use.
type Histogram struct {
	bounds []float64 // upper bounds, ascending; +Inf is implied
	counts []atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

// NewHistogram makes a histogram with the given ascending upper bounds.
func NewHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
}

// HistogramSnapshot is a histogram's state: Counts[i] observations fell
// in bucket i (not cumulative; the last is above every bound).
type HistogramSnapshot struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
	Count  uint64
}

// Snapshot reads the histogram; Count is the buckets' total, so that the
// exposition's +Inf bucket always equals _count.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: h.bounds, Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum = math.Float64frombits(h.sum.Load())
	return s
}
