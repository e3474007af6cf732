package runtime

import (
	"container/list"
	"sync"
)

// taskList holds the runtime's tasks (held or running) in the order they
// were added, under one mutex. Adding and removing cost O(1) and no
// hashing, and the heartbeat walks only the oldest tasks, those old
// enough to need it: walking every task each 10 ms was a tenth of the
// runtime's processor time in a flood of short tasks (a sync.Map before
// that, which allocates for every new key, an eighth).
//
// Each task keeps its own element (el), read and written only under the
// list's mutex: removing a task twice, or one never added, does nothing.
type taskList[T any] struct {
	mu sync.Mutex
	l  list.List
}

func (s *taskList[T]) add(v T, el **list.Element) {
	s.mu.Lock()
	*el = s.l.PushBack(v)
	s.mu.Unlock()
}

func (s *taskList[T]) remove(el **list.Element) {
	s.mu.Lock()
	if *el != nil {
		s.l.Remove(*el)
		*el = nil
	}
	s.mu.Unlock()
}

func (s *taskList[T]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l.Len()
}

// each calls f for the tasks in the list when it is called, outside the
// lock (f may take its time: a lease renewal is a round trip), so that
// adding and removing tasks never waits for it.
func (s *taskList[T]) each(f func(T)) {
	s.oldest(func(T) bool { return true }, f)
}

// oldest calls f, outside the lock, for the tasks from the oldest on as
// long as old says they are old enough.
func (s *taskList[T]) oldest(old func(T) bool, f func(T)) {
	s.mu.Lock()
	var vs []T
	for e := s.l.Front(); e != nil; e = e.Next() {
		v := e.Value.(T)
		if !old(v) {
			break
		}
		vs = append(vs, v)
	}
	s.mu.Unlock()
	for _, v := range vs {
		f(v)
	}
}
