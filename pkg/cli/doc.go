// Package cli implements the three programs, submit, coordinator and
// runtime, as functions that take arguments and an Env and return an exit
// code, so that they are tested in-process as well as built as binaries.
// See docs/cli.md.
package cli
