package logging

import (
	"net/url"
	"strings"
)

// Redacted replaces a secret in logs.
const Redacted = "REDACTED"

// secretWords are parts of names (query parameters, attribute keys) whose
// values are treated as secrets.
var secretWords = []string{
	"password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "api-key",
	"access_key", "accesskey", "private", "credential", "signature", "sig", "auth", "session",
}

// isSecretParam reports whether a URL query parameter holds a secret:
// besides the secret words, "key" and "*_key" (S3 presigned URLs, API keys).
func isSecretParam(name string) bool {
	n := strings.ToLower(name)
	if n == "key" || strings.HasSuffix(n, "_key") || strings.HasSuffix(n, "-key") {
		return true
	}
	return isSecretName(n)
}

// isSecretName reports whether a name (a log attribute key) holds a secret.
// A bare "key" is not one: it is the storage object key all over Skein.
func isSecretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretWords {
		if n == w || strings.Contains(n, w) {
			if w == "sig" && n != "sig" && !strings.HasSuffix(n, "-sig") && !strings.HasSuffix(n, "_sig") {
				continue // "signal", "design" are not secrets
			}
			return true
		}
	}
	return false
}

// RedactURL returns s with credentials hidden: the password of the user
// info (a user without password is taken for a token and hidden whole), and
// the values of query parameters whose names look like secrets. A string
// that does not parse as a URL gets the user-info rule applied textually,
// so that a malformed URL with a password does not slip through.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return redactUserinfoText(s)
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		} else {
			u.User = url.User(Redacted)
		}
		changed = true
	}
	if u.RawQuery != "" {
		if q, ok := redactQuery(u.RawQuery); ok {
			u.RawQuery = q
			changed = true
		}
	}
	if !changed {
		return s
	}
	// url.URL.String escapes the user info; keep REDACTED readable.
	return u.String()
}

// redactQuery hides the values of secret-looking parameters, keeping the
// order and encoding of the others.
func redactQuery(raw string) (string, bool) {
	parts := strings.Split(raw, "&")
	changed := false
	for i, p := range parts {
		name, _, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		if dec, err := url.QueryUnescape(name); err == nil {
			name = dec
		}
		if isSecretParam(name) {
			parts[i] = p[:strings.IndexByte(p, '=')+1] + Redacted
			changed = true
		}
	}
	return strings.Join(parts, "&"), changed
}

// redactUserinfoText handles strings url.Parse refuses: anything between
// "://" and the next "@" before the first "/" is user info.
func redactUserinfoText(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return s
	}
	user := rest[:at]
	if name, _, has := strings.Cut(user, ":"); has {
		return s[:i+3] + name + ":" + Redacted + rest[at:]
	}
	return s[:i+3] + Redacted + rest[at:]
}
