package datapath

import "time"

// SetHaveFor sets how long a modules directory seen on disk is trusted,
// until the returned function restores it.
func SetHaveFor(d time.Duration) func() {
	old := haveFor
	haveFor = d
	return func() { haveFor = old }
}
