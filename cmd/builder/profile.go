package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile to $BUILDER_CPUPROFILE (a developer
// aid for make bench findings; the variable is not a user interface). In a
// rootless run it is the re-executed process that does the work, so the
// file is written by that one.
func startProfile() func() {
	path := os.Getenv("BUILDER_CPUPROFILE")
	if path == "" || os.Getenv("_CONTAINERS_USERNS_CONFIGURED") == "" && os.Geteuid() != 0 {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "BUILDER_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "BUILDER_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
