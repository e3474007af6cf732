package runtime

import "sync"

// taskList holds the runtime's tasks (held or running) in the order they
// were added, under one mutex. Each task carries its own links, so that
// adding and removing cost O(1), no hashing and no allocation, and the
// heartbeat walks only the oldest tasks, those old enough to need it:
// walking every task each 10 ms was a tenth of the runtime's processor
// time in a flood of short tasks (a sync.Map before that, which
// allocates for every new key, an eighth).
//
// A task's links are read and written only under the list's mutex:
// removing a task twice, or one never added, does nothing.
type taskList[T interface {
	comparable
	links() *links[T]
}] struct {
	mu         sync.Mutex
	head, tail T
	n          int
}

// links is a task's place in a taskList.
type links[T any] struct {
	prev, next T
	in         bool
}

func (s *taskList[T]) add(v T) {
	var none T
	s.mu.Lock()
	l := v.links()
	l.prev, l.next, l.in = s.tail, none, true
	if s.tail != none {
		s.tail.links().next = v
	} else {
		s.head = v
	}
	s.tail = v
	s.n++
	s.mu.Unlock()
}

func (s *taskList[T]) remove(v T) {
	var none T
	s.mu.Lock()
	defer s.mu.Unlock()
	l := v.links()
	if !l.in {
		return
	}
	if l.prev != none {
		l.prev.links().next = l.next
	} else {
		s.head = l.next
	}
	if l.next != none {
		l.next.links().prev = l.prev
	} else {
		s.tail = l.prev
	}
	l.prev, l.next, l.in = none, none, false
	s.n--
}

func (s *taskList[T]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
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
	var none T
	s.mu.Lock()
	var vs []T
	for v := s.head; v != none && old(v); v = v.links().next {
		vs = append(vs, v)
	}
	s.mu.Unlock()
	for _, v := range vs {
		f(v)
	}
}
