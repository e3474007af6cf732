package dial

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// splitReplicas takes the "?replicas=N" query off every URL of a list:
// the replicas of the streams (and consumers) Skein creates on a NATS
// cluster, 3 for a three-node cluster so that a node's loss loses no
// task. 0 when not given (the bus default, 1).
func splitReplicas(raw string) (urls string, replicas int, err error) {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, perr := url.Parse(strings.TrimSpace(p))
		if perr != nil {
			return "", 0, fmt.Errorf("%w %q: %v", ErrBadURL, Redact(p), perr)
		}
		q := u.Query()
		if v := q.Get("replicas"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 5 {
				return "", 0, fmt.Errorf("%w %q: replicas=%q: want 1 to 5", ErrBadURL, Redact(raw), v)
			}
			if replicas != 0 && replicas != n {
				return "", 0, fmt.Errorf("%w %q: the URLs name different replicas", ErrBadURL, Redact(raw))
			}
			replicas = n
		}
		q.Del("replicas")
		u.RawQuery = q.Encode()
		parts[i] = u.String()
	}
	return strings.Join(parts, ","), replicas, nil
}
