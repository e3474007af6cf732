package cli

import (
	"io"
	"log/slog"

	"github.com/skeinrun/skein/pkg/logging"
)

// LogFlags are --log-level and --log-format.
type LogFlags struct {
	Level  string
	Format string
}

// Logger builds the slog logger the flags ask for (pkg/logging: text or
// JSON, credentials in URLs and secret-named attributes redacted).
func (f LogFlags) Logger(w io.Writer) (*slog.Logger, error) {
	return logging.New(w, logging.Config{Level: f.Level, Format: f.Format})
}
