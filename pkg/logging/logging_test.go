package logging

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func TestValidateNamesFlags(t *testing.T) {
	tests := []struct {
		cfg  Config
		want []string // substrings of the error; none = valid
	}{
		{Config{}, nil},
		{DefaultConfig(), nil},
		{Config{Level: "DEBUG", Format: "JSON"}, nil},
		{Config{Level: "warning", Format: "text"}, nil},
		{Config{Level: "verbose", Format: "text"}, []string{"--log-level", `"verbose"`}},
		{Config{Level: "info", Format: "yaml"}, []string{"--log-format", `"yaml"`}},
		{Config{Level: "loud", Format: "xml"}, []string{"--log-level", "--log-format"}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if len(tt.want) == 0 {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", tt.cfg)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %q, want it to mention %s", tt.cfg, err, w)
			}
		}
		if _, err := New(&bytes.Buffer{}, tt.cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", tt.cfg)
		}
	}
}

func TestNewLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, Config{Level: "warn", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "job", "j1")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1 (info must be filtered at warn): %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("json format line does not parse: %v: %s", err, lines[0])
	}
	if rec["msg"] != "shown" || rec["job"] != "j1" || rec["level"] != "WARN" {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	log, _ = New(&buf, Config{Level: "debug", Format: "text"})
	log.Debug("dbg", "n", 3)
	if !strings.Contains(buf.String(), "level=DEBUG msg=dbg n=3") {
		t.Errorf("text line = %q", buf.String())
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://user:s3cret@127.0.0.1:4222", "nats://user:REDACTED@127.0.0.1:4222"},
		{"amqp://guest:guest@localhost:5672/vhost", "amqp://guest:REDACTED@localhost:5672/vhost"},
		{"https://ghp_abcdef@example.com/x", "https://REDACTED@example.com/x"},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"cos://bucket/key?part=3", "cos://bucket/key?part=3"},
		{"https://s3.local/b/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc&partNumber=2",
			"https://s3.local/b/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&partNumber=2"},
		{"http://h/p?token=t&api_key=k&design=1&sig=zz", "http://h/p?token=REDACTED&api_key=REDACTED&design=1&sig=REDACTED"},
		{"http://h/p?access_token=abc", "http://h/p?access_token=REDACTED"},
		// does not parse (bad port), still redacted
		{"nats://u:p@host:port/x", "nats://u:REDACTED@host:port/x"},
		{"not a url", "not a url"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(tt.want, Redacted) && strings.Contains(RedactURL(tt.in), "s3cret") {
			t.Errorf("secret leaked from %q", tt.in)
		}
	}
}

func TestHandlerRedacts(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, Config{Format: "text"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("connect", "bus", "nats://alice:hunter2@127.0.0.1:4222", "password", "hunter2",
		"key", "books/a.txt", "secret_access_key", "xyz", "n", 1)
	out := buf.String()
	for _, leak := range []string{"hunter2", "xyz"} {
		if strings.Contains(out, leak) {
			t.Errorf("log line leaks %q: %s", leak, out)
		}
	}
	for _, keep := range []string{"alice:REDACTED@127.0.0.1:4222", "key=books/a.txt", "n=1"} {
		if !strings.Contains(out, keep) {
			t.Errorf("log line lacks %q: %s", keep, out)
		}
	}
}

func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{"nats://u:p@h:1", "http://h/?token=a", "://@", "a?b=c&d"} {
		f.Add(s)
	}
	// RedactURL sees whatever a user configured: it must never panic, and a
	// password that url.Parse finds must not survive.
	f.Fuzz(func(t *testing.T, s string) {
		r := RedactURL(s)
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			return
		}
		if p, ok := u.User.Password(); ok && len(p) >= 4 && !strings.Contains(Redacted, p) &&
			strings.Count(s, p) == 1 && strings.Contains(r, p) {
			t.Errorf("RedactURL(%q) = %q keeps the password %q", s, r, p)
		}
	})
}
