package dial

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitReplicas(t *testing.T) {
	for _, c := range []struct {
		in, urls string
		n        int
		bad      bool
	}{
		{"nats://a:4222", "nats://a:4222", 0, false},
		{"nats://a:4222?replicas=3", "nats://a:4222", 3, false},
		{"nats://u:pw@a:4222?replicas=3,nats://b:4222", "nats://u:pw@a:4222,nats://b:4222", 3, false},
		{"nats://a:4222?replicas=3,nats://b:4222?replicas=1", "", 0, true},
		{"nats://a:4222?replicas=0", "", 0, true},
		{"nats://u:pw@a:4222?replicas=x", "", 0, true},
	} {
		urls, n, err := splitReplicas(c.in)
		if c.bad {
			if !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "pw") {
				t.Errorf("%s: error %v, want ErrBadURL without the password", c.in, err)
			}
			continue
		}
		if err != nil || urls != c.urls || n != c.n {
			t.Errorf("%s: %q %d %v, want %q %d", c.in, urls, n, err, c.urls, c.n)
		}
	}
}
