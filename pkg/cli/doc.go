// Package cli implements the three programs, submit, coordinator and
// runtime, as functions that take arguments and an Env and return an exit
// code, so that they are tested in-process as well as built as binaries.
// Serve is submit's client mode: many jobs over one bus connection, as
// JSON lines on stdin and stdout, for a program that submits many small
// jobs (the skeinrun Python executor; serve.go documents the protocol).
// See docs/cli.md.
package cli
