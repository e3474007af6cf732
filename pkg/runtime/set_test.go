package runtime

import (
	"slices"
	"testing"
)

func TestTaskListOldestStopsAtTheFirstYoung(t *testing.T) {
	var l taskList[*agedTask]
	ts := []*agedTask{{age: 9}, {age: 7}, {age: 2}, {age: 8}}
	for _, x := range ts {
		l.add(x)
	}
	var got []int
	l.oldest(func(x *agedTask) bool { return x.age >= 5 }, func(x *agedTask) { got = append(got, x.age) })
	if !slices.Equal(got, []int{9, 7}) {
		t.Fatalf("oldest walked %v, want [9 7]: the walk stops at the first task too young", got)
	}
	l.remove(ts[1])
	l.remove(ts[1]) // a second removal does nothing
	got = got[:0]
	l.each(func(x *agedTask) { got = append(got, x.age) })
	if !slices.Equal(got, []int{9, 2, 8}) || l.len() != 3 {
		t.Fatalf("after removing 7 the list holds %v (len %d), want [9 2 8]", got, l.len())
	}
	l.remove(&agedTask{}) // never added: nothing happens
	if l.len() != 3 {
		t.Fatalf("removing a task never added changed the list: len %d", l.len())
	}
	// The head and the tail go; what is added next comes last.
	l.remove(ts[0])
	l.remove(ts[3])
	l.add(ts[0])
	got = got[:0]
	l.each(func(x *agedTask) { got = append(got, x.age) })
	if !slices.Equal(got, []int{2, 9}) || l.len() != 2 {
		t.Fatalf("the list holds %v (len %d), want [2 9]", got, l.len())
	}
	l.remove(ts[2])
	l.remove(ts[0])
	got = got[:0]
	l.each(func(x *agedTask) { got = append(got, x.age) })
	if len(got) != 0 || l.len() != 0 || l.head != nil || l.tail != nil {
		t.Fatalf("emptied, the list holds %v (len %d)", got, l.len())
	}
}

type agedTask struct {
	age  int
	link links[*agedTask]
}

func (a *agedTask) links() *links[*agedTask] { return &a.link }
