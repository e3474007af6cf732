package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Formats accepted by --log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Config is the logging part of a command's flags.
type Config struct {
	// Level is --log-level: debug, info, warn or error (case-insensitive).
	Level string
	// Format is --log-format: text or json.
	Format string
	// AddSource adds the file:line of the logging call.
	AddSource bool
}

// DefaultConfig is info-level text logs.
func DefaultConfig() Config {
	return Config{Level: "info", Format: FormatText}
}

func (c *Config) setDefaults() {
	if c.Level == "" {
		c.Level = "info"
	}
	if c.Format == "" {
		c.Format = FormatText
	}
}

// Validate reports every bad field, naming the flag it comes from.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if _, err := ParseLevel(c.Level); err != nil {
		errs = append(errs, err)
	}
	switch strings.ToLower(c.Format) {
	case FormatText, FormatJSON:
	default:
		errs = append(errs, fmt.Errorf("--log-format: %q is not a log format: want json or text", c.Format))
	}
	return errors.Join(errs...)
}

// ParseLevel parses a --log-level value.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level: %q is not a log level: want debug, info, warn or error", s)
}

// New returns a logger writing to w as cfg says. Its handler redacts
// credentials in string attributes (see RedactAttr).
func New(w io.Writer, cfg Config) (*slog.Logger, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lvl, _ := ParseLevel(cfg.Level)
	opts := &slog.HandlerOptions{Level: lvl, AddSource: cfg.AddSource, ReplaceAttr: RedactAttr}
	var h slog.Handler
	if strings.ToLower(cfg.Format) == FormatJSON {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h), nil
}

// Discard returns a logger that drops everything (for callers that were
// given no logger).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// RedactAttr is a slog ReplaceAttr function: an attribute whose key names a
// secret is replaced whole, and a string value holding a URL with
// credentials is redacted with RedactURL. Groups are walked by slog itself.
func RedactAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindString {
		if a.Value.Kind() != slog.KindAny && a.Value.Kind() != slog.KindLogValuer {
			return a
		}
		if isSecretName(a.Key) {
			return slog.String(a.Key, Redacted)
		}
		return a
	}
	if isSecretName(a.Key) && a.Value.String() != "" {
		return slog.String(a.Key, Redacted)
	}
	s := a.Value.String()
	if strings.Contains(s, "://") || strings.Contains(s, "?") {
		if r := RedactURL(s); r != s {
			return slog.String(a.Key, r)
		}
	}
	return a
}
