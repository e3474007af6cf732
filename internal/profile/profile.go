// Package profile writes Go CPU and heap profiles of a Skein program when
// asked by environment variable, for diagnosing where its time goes:
//
//	SKEIN_CPUPROFILE=cpu.out submit map …
//	go tool pprof -top submit cpu.out
//
// SKEIN_CPUPROFILE names the CPU profile's file (written from start to
// exit), SKEIN_TRACE an execution trace's (from start to exit: where a
// program waits, `go tool trace`), SKEIN_MEMPROFILE the heap profile's
// (written at exit), and
// SKEIN_PEAK_RSS_FILE a file that receives the process's peak resident
// set size in bytes at exit (VmHWM, Linux). A parent's wait4 rusage is no
// substitute: a child started with vfork reports the parent's peak as its
// own when the parent was larger. Unset, nothing is done.
package profile

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
)

// Start begins what the environment asks for and returns the function
// that ends it; call that before the program exits.
func Start() (stop func()) {
	var stops []func()
	for _, r := range []struct {
		env         string
		start       func(io.Writer) error
		stopWriting func()
	}{
		{"SKEIN_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"SKEIN_TRACE", trace.Start, trace.Stop},
	} {
		if stop := startTo(r.env, r.start, r.stopWriting); stop != nil {
			stops = append(stops, stop)
		}
	}
	if path := os.Getenv("SKEIN_MEMPROFILE"); path != "" {
		stops = append(stops, func() {
			f, err := os.Create(path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "SKEIN_MEMPROFILE: %v\n", err)
				return
			}
			defer f.Close()
			runtime.GC()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				fmt.Fprintf(os.Stderr, "SKEIN_MEMPROFILE: %v\n", err)
			}
		})
	}
	if path := os.Getenv("SKEIN_PEAK_RSS_FILE"); path != "" {
		stops = append(stops, func() {
			if err := writePeakRSS(path); err != nil {
				fmt.Fprintf(os.Stderr, "SKEIN_PEAK_RSS_FILE: %v\n", err)
			}
		})
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// writePeakRSS writes this process's VmHWM in bytes to path.
func writePeakRSS(path string) error {
	b, err := PeakRSS(0)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strconv.FormatInt(b, 10)+"\n"), 0o644)
}

// PeakRSS is process pid's peak resident set in bytes so far (VmHWM in
// /proc; Linux only); pid 0 is this process.
func PeakRSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmHWM %q: %w", path, f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in %s", path)
}

// Exit ends the profiles and exits with code.
func Exit(stop func(), code int) {
	stop()
	os.Exit(code)
}

// startTo starts a recording (a CPU profile, an execution trace) into the
// file named by the variable env, when it is set, and returns what stops
// it; nil when unset or when it could not start (said on stderr).
func startTo(env string, start func(io.Writer) error, stopWriting func()) func() {
	path := os.Getenv(env)
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err == nil {
		if err = start(f); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
		return nil
	}
	return func() { stopWriting(); _ = f.Close() }
}
