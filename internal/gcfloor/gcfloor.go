// Package gcfloor keeps the Go collector from running often while a
// process's live heap is small: it raises the collector's growth
// percentage (GOGC) so that the next collection comes no sooner than at
// a floor of heap, and gives the percentage back as the live heap grows.
//
// A coordinator or runtime that streams tasks keeps a few megabytes live
// and allocates a few kilobytes per task: at the default GOGC=100 it
// collects every few thousand tasks, and the collector takes a fifth of
// its processor time. With a floor of 64 MiB it collects an order of
// magnitude less often, for at most the floor in extra memory; a process
// whose live heap exceeds half the floor runs at its base percentage, as
// without the floor.
//
// The floor is re-applied after every collection (a finalizer re-armed
// each cycle, so no goroutine). GOGC set in the environment turns it
// off, as does a floor of 0 (SKEIN_GC_FLOOR=0).
package gcfloor

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
)

// Default is the floor of Start when SKEIN_GC_FLOOR is unset.
const Default = 64 << 20

// heapMinimum is the Go collector's least heap goal at GOGC=100; it
// scales with GOGC (4 MiB × GOGC/100), so a percentage above
// floor/heapMinimum × 100 would put the goal of a nearly empty heap past
// the floor.
const heapMinimum = 4 << 20

// Percent is the GOGC that puts the next collection of a heap with live
// bytes live at floor or later (and, for a nearly empty heap, not much
// later), and never below base.
func Percent(live, floor uint64, base int) int {
	if live == 0 || floor <= live {
		return base
	}
	p := (floor - live) * 100 / live
	if (floor-live)*100%live != 0 {
		p++
	}
	p = min(p, floor*100/heapMinimum)
	return max(int(p), base)
}

// ParseSize reads a byte count: a number with an optional KiB, MiB or
// GiB suffix ("64MiB", "0").
func ParseSize(s string) (uint64, error) {
	mult := uint64(1)
	num := strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%q: want a byte count such as 64MiB, or 0", s)
	}
	return n * mult, nil
}

// Start applies the floor SKEIN_GC_FLOOR names (Default when unset or
// empty) over the process's current GOGC, unless GOGC is set in the
// environment (getenv), and returns the function that removes it and
// restores that GOGC. A malformed SKEIN_GC_FLOOR is an error (nothing is
// applied).
func Start(getenv func(string) string) (stop func(), err error) {
	floor := uint64(Default)
	if v := getenv("SKEIN_GC_FLOOR"); v != "" {
		if floor, err = ParseSize(v); err != nil {
			return func() {}, fmt.Errorf("SKEIN_GC_FLOOR: %w", err)
		}
	}
	if floor == 0 || getenv("GOGC") != "" {
		return func() {}, nil
	}
	return Apply(floor), nil
}

// Apply keeps the floor until the returned function is called, over the
// current GOGC (the base percentage), which that function restores.
func Apply(floor uint64) (stop func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 {
		return func() {} // the collector is off
	}
	var stopped atomic.Bool
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	adjust := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			debug.SetGCPercent(Percent(sample[0].Value.Uint64(), floor, base))
		}
	}
	// The sentinel's finalizer runs after each collection that found it
	// unreachable, and arms a new sentinel for the next one.
	var arm func()
	arm = func() {
		s := new([16]byte)
		runtime.SetFinalizer(s, func(*[16]byte) {
			if stopped.Load() {
				return
			}
			adjust()
			arm()
		})
	}
	adjust()
	arm()
	return func() {
		if stopped.CompareAndSwap(false, true) {
			debug.SetGCPercent(base)
		}
	}
}
