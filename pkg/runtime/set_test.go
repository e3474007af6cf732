package runtime

import (
	"container/list"
	"slices"
	"testing"
)

func TestTaskListOldestStopsAtTheFirstYoung(t *testing.T) {
	type task struct {
		age int
		el  *list.Element
	}
	var l taskList[*task]
	ts := []*task{{age: 9}, {age: 7}, {age: 2}, {age: 8}}
	for _, x := range ts {
		l.add(x, &x.el)
	}
	var got []int
	l.oldest(func(x *task) bool { return x.age >= 5 }, func(x *task) { got = append(got, x.age) })
	if !slices.Equal(got, []int{9, 7}) {
		t.Fatalf("oldest walked %v, want [9 7]: the walk stops at the first task too young", got)
	}
	l.remove(&ts[1].el)
	l.remove(&ts[1].el) // a second removal does nothing
	got = got[:0]
	l.each(func(x *task) { got = append(got, x.age) })
	if !slices.Equal(got, []int{9, 2, 8}) || l.len() != 3 {
		t.Fatalf("after removing 7 the list holds %v (len %d), want [9 2 8]", got, l.len())
	}
	var never task
	l.remove(&never.el) // never added: nothing happens
	if l.len() != 3 {
		t.Fatalf("removing a task never added changed the list: len %d", l.len())
	}
}
