// Package local is the local compute backend: runtime workers in the
// coordinator's own process, pulling from the pool's queue over their own
// bus connection, exactly as pkg/embedded runs them for submit.
//
// The workers start with the backend and run until Close, so Dispatch has
// nothing to do but check the job: the tasks are already on the queue
// that the workers pull from.
package local
