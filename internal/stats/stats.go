// Package stats holds Skein's one percentile helper, shared by the
// coordinator (task latency in a job's status), the plots and the
// benchmarks, so that every p50 and p99 Skein prints means the same.
package stats

import (
	"cmp"
	"slices"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs by the
// nearest-rank method on a sorted copy: the smallest value such that at
// least p% of the values are at or below it. It returns the zero value for
// an empty slice; xs is not changed.
func Percentile[T cmp.Ordered](xs []T, p float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Sorted(s, p)
}

// Sorted is Percentile for a slice already sorted in ascending order.
func Sorted[T cmp.Ordered](s []T, p float64) T {
	var zero T
	if len(s) == 0 {
		return zero
	}
	switch {
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	// Nearest rank: ceil(p/100 * n), 1-based.
	rank := int(p / 100 * float64(len(s)))
	if float64(rank) < p/100*float64(len(s)) {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}
