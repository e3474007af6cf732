// Package logging builds the *slog.Logger every Skein command uses, from the
// --log-level and --log-format flags, and keeps credentials out of logs.
//
// # Setup
//
// Commands call New with a Config filled from their flags:
//
//	log, err := logging.New(os.Stderr, logging.Config{Level: *level, Format: *format})
//
// Config.Validate names the flag a bad value came from ("--log-level: …"),
// so the error can be printed as a usage error as is. Logs always go to
// stderr: stdout is reserved for a job's result.
//
// # Redaction
//
// RedactURL hides the password of a URL's user info (nats://user:pass@host
// becomes nats://user:REDACTED@host), a bare token user
// (https://TOKEN@host becomes https://REDACTED@host), and the values of
// query parameters whose names look like secrets (token, secret, password,
// key, signature, credential, …). Every logger built by New also runs
// string attributes through the same rules: values that hold a URL with
// user info are redacted, and attributes whose key names a secret
// (password, secret, token, …) are replaced whole. Redaction in the handler
// is a safety net, not a licence: do not log secrets on purpose.
package logging
