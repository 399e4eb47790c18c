package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startMemProfile writes a heap profile to $BUILDER_MEMPROFILE each time
// the heap in use reaches a new peak (sampled every 20 ms), so the file
// shows what the process held at its largest (a developer aid for make
// bench's peak RSS figures, as BUILDER_CPUPROFILE is).
func startMemProfile() {
	path := os.Getenv("BUILDER_MEMPROFILE")
	if path == "" || os.Getenv("_CONTAINERS_USERNS_CONFIGURED") == "" && os.Geteuid() != 0 {
		return
	}
	runtime.MemProfileRate = 64 << 10
	go func() {
		var peak uint64
		var ms runtime.MemStats
		for range time.Tick(20 * time.Millisecond) {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak+(1<<20) {
				peak = ms.HeapInuse
				if f, err := os.Create(path); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}
	}()
}
