package metrics

import "sync/atomic"

// workerSlots bounds the runtimes one pool's table tracks at once.
const workerSlots = 4096

// workerSet remembers when each runtime (Event.Worker) was last heard of,
// without locks or allocations: an open-addressing table of 64-bit hashes
// of the names. A name whose slot another took (a 64-bit hash collision)
// counts once; a full table stops counting newcomers until old entries
// expire (reclaim).
type workerSet struct {
	slots [workerSlots]struct {
		hash atomic.Uint64
		seen atomic.Int64 // unix ns
	}
}

func hashName(s string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	if h == 0 {
		h = 1
	}
	return h
}

// see records worker at now; an entry older than stale may be reused.
func (s *workerSet) see(worker string, now, stale int64) {
	h := hashName(worker)
	start := h % workerSlots
	for k := uint64(0); k < 32; k++ {
		e := &s.slots[(start+k)%workerSlots]
		cur := e.hash.Load()
		if cur == h {
			e.seen.Store(now)
			return
		}
		if cur == 0 || e.seen.Load() < stale {
			if e.hash.CompareAndSwap(cur, h) {
				e.seen.Store(now)
				return
			}
			if e.hash.Load() == h { // another goroutine put it there
				e.seen.Store(now)
				return
			}
		}
	}
}

// count returns how many workers were seen at or after since.
func (s *workerSet) count(since int64) int {
	n := 0
	for i := range s.slots {
		if s.slots[i].hash.Load() != 0 && s.slots[i].seen.Load() >= since {
			n++
		}
	}
	return n
}
