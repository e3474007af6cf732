package stats

import "testing"

func TestPercentile(t *testing.T) {
	xs := []int64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct {
		p    float64
		want int64
	}{{0, 1}, {10, 1}, {50, 5}, {51, 6}, {90, 9}, {99, 10}, {100, 10}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("Percentile(p%v) = %d, want %d", c.p, got, c.want)
		}
	}
	if xs[0] != 5 {
		t.Fatal("Percentile sorted its input in place")
	}
	if got := Percentile([]float64{}, 50); got != 0 {
		t.Fatalf("empty: %v", got)
	}
	if got := Percentile([]float64{2.5}, 99); got != 2.5 {
		t.Fatalf("one value: %v", got)
	}
}
