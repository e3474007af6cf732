// Package client is the Go API of Skein: submit jobs to a coordinator over
// a bus, wait for them (on their end record, an event: no polling), fetch
// their results, watch their progress, cancel them, and replay their
// events. The submit command is built on it; pkg/embedded gives a client
// on an in-process installation.
package client
