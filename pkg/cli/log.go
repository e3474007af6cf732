package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogFlags are --log-level and --log-format.
type LogFlags struct {
	Level  string
	Format string
}

// Logger builds the slog logger the flags ask for.
func (f LogFlags) Logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	switch strings.ToLower(f.Level) {
	case "debug":
		lvl = slog.LevelDebug
	case "", "info":
		lvl = slog.LevelInfo
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.Level)
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(f.Format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", f.Format)
}
