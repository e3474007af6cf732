package runtime

import "sync"

// taskSet is a set of the runtime's tasks (held or running) under one
// mutex. Each task is added once and removed once: a sync.Map allocates
// for every new key, and was an eighth of the runtime's processor time in
// a flood of short tasks.
type taskSet[T comparable] struct {
	mu sync.Mutex
	m  map[T]struct{}
}

func (s *taskSet[T]) add(k T) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[T]struct{})
	}
	s.m[k] = struct{}{}
	s.mu.Unlock()
}

func (s *taskSet[T]) remove(k T) {
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func (s *taskSet[T]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// each calls f for the tasks in the set when it is called, outside the
// lock (f may take its time: a lease renewal is a round trip), so that
// adding and removing tasks never waits for it.
func (s *taskSet[T]) each(f func(T)) {
	s.mu.Lock()
	ks := make([]T, 0, len(s.m))
	for k := range s.m {
		ks = append(ks, k)
	}
	s.mu.Unlock()
	for _, k := range ks {
		f(k)
	}
}
