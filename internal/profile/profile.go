// Package profile writes Go CPU and heap profiles of a Skein program when
// asked by environment variable, for diagnosing where its time goes:
//
//	SKEIN_CPUPROFILE=cpu.out submit map …
//	go tool pprof -top submit cpu.out
//
// SKEIN_CPUPROFILE names the CPU profile's file (written from start to
// exit), SKEIN_MEMPROFILE the heap profile's (written at exit). Unset,
// nothing is done.
package profile

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// Start begins what the environment asks for and returns the function
// that ends it; call that before the program exits.
func Start() (stop func()) {
	var stops []func()
	if path := os.Getenv("SKEIN_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "SKEIN_CPUPROFILE: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "SKEIN_CPUPROFILE: %v\n", err)
			_ = f.Close()
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); _ = f.Close() })
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
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// Exit ends the profiles and exits with code.
func Exit(stop func(), code int) {
	stop()
	os.Exit(code)
}
