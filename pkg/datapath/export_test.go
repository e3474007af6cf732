package datapath

import (
	"time"

	"github.com/skeinrun/skein/pkg/storage"
)

// SetHaveFor sets how long a modules directory seen on disk is trusted,
// until the returned function restores it.
func SetHaveFor(d time.Duration) func() {
	old := haveFor
	haveFor = d
	return func() { haveFor = old }
}

// SetOutageFor sets how long a storage operation rides out an outage,
// until the returned function restores it.
func SetOutageFor(d time.Duration) func() {
	old := storage.RideOut
	storage.RideOut = d
	return func() { storage.RideOut = old }
}
