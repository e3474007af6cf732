package dial

import "testing"

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@h:4222", "nats://alice:REDACTED@h:4222"},
		{"nats://tok@h:4222,nats://bob:pw@h2:4222?ns=x", "nats://REDACTED@h:4222,nats://bob:REDACTED@h2:4222?ns=x"},
		{"amqps://u:p@h/vhost?token=abc", "amqps://u:REDACTED@h/vhost?token=REDACTED"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
