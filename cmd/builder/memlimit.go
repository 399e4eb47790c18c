package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// softLimitFloor is the Go memory the process may use before the garbage
// collector works harder than GOGC asks.
const softLimitFloor = 32 << 20

// softMemoryLimit keeps a build's memory near what it really holds. A
// build allocates in bursts (20,000 files hashed, walked and written make
// hundreds of MB of short-lived buffers) while holding little (~15 MB):
// with GOGC alone the heap grew to twice what was live between
// collections and the peak RSS on a 20,000-file COPY was 88 MB. A soft
// limit of 32 MiB cuts that to ~60 MB at no measurable cost. The limit
// follows the live heap upwards (twice it, plus headroom) so that a build
// that really holds more (a Dockerfile of 20,000 LABELs) is collected as
// GOGC=50 would, never in a loop. GOMEMLIMIT, when set, wins.
func softMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(softLimitFloor)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		current := int64(softLimitFloor)
		for range time.Tick(100 * time.Millisecond) {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return
			}
			live := int64(sample[0].Value.Uint64())
			want := max(int64(softLimitFloor), live+max(16<<20, live/2))
			if want != current {
				debug.SetMemoryLimit(want)
				current = want
			}
		}
	}()
}
