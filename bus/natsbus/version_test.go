package natsbus

import "testing"

func TestServerAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"2.9.10", false},
		{"2.9.11", false},
		{"2.9.12", true},
		{"2.9.25", true},
		{"2.10.0", true},
		{"2.10.0-beta.1", true},
		{"v2.15.2", true},
		{"3.0.0", true},
		{"1.99.99", false},
		{"", false},
		{"2.9", false},
		{"garbage", false},
	} {
		if got := serverAtLeast(c.v, 2, 9, 12); got != c.want {
			t.Errorf("serverAtLeast(%q, 2.9.12) = %v, want %v", c.v, got, c.want)
		}
	}
}
