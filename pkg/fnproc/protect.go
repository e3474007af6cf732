package fnproc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Protect makes this process non-dumpable (prctl PR_SET_DUMPABLE 0): its
// /proc/PID files (environ, mem, maps…) then belong to root and other
// processes of the same user cannot ptrace it. A function running as the
// runtime's own user (a runtime not started as root, as in the container
// images) therefore cannot read the runtime's environment — its bus URL
// and storage keys — through /proc/PPID/environ. Function processes are
// dumpable again after their exec, so they are unaffected. The runtime
// also makes no core dump.
func Protect() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
