package dashboard

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// Auth decides who may read the page and who may cancel jobs.
type Auth struct {
	// Token, when set, gives whoever presents it every right: as
	// "Authorization: Bearer TOKEN", or the cookie /login?token=TOKEN
	// sets.
	Token string
	// UserHeader names the header a reverse proxy sets to the
	// authenticated user (X-Forwarded-User, X-Auth-Request-User…). The
	// proxy must strip it from what clients send.
	UserHeader string
	// CancelUsers are the UserHeader users who may cancel ("*": all).
	CancelUsers []string
	// ReadNeedsAuth refuses the page to callers with neither the token
	// nor the header.
	ReadNeedsAuth bool
}

// cookieName holds the token in a browser.
const cookieName = "skein_token"

// rights are what a caller may do.
type rights struct {
	User   string `json:"user,omitempty"`
	Read   bool   `json:"read"`
	Cancel bool   `json:"cancel"`
}

func (a Auth) tokenOK(s string) bool {
	return a.Token != "" && subtle.ConstantTimeCompare([]byte(s), []byte(a.Token)) == 1
}

func (a Auth) rights(r *http.Request) rights {
	if a.Token != "" {
		if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && a.tokenOK(b) {
			return rights{User: "token", Read: true, Cancel: true}
		}
		if c, err := r.Cookie(cookieName); err == nil && a.tokenOK(c.Value) {
			return rights{User: "token", Read: true, Cancel: true}
		}
	}
	if a.UserHeader != "" {
		if u := r.Header.Get(a.UserHeader); u != "" {
			return rights{User: u, Read: true, Cancel: slices.Contains(a.CancelUsers, "*") || slices.Contains(a.CancelUsers, u)}
		}
	}
	return rights{Read: !a.ReadNeedsAuth}
}
