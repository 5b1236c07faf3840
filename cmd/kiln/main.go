// Command kiln builds, tags and pushes container images without a daemon and
// without privileges.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/kiln-build/kiln/internal/cli"
)

// gcPercent and memoryLimit tune the garbage collector unless GOGC or
// GOMEMLIMIT say otherwise. kiln streams layers through fixed buffers, so
// its live heap is small and the default (a collection each time the heap
// doubles) collects tens of times per build, each time dropping the
// compressors' pooled buffers, which are then allocated and faulted in
// again. A higher target lets those buffers live; the soft limit keeps a
// build with a large live heap (a RUN step's diff of many files) from
// growing five-fold.
const (
	gcPercent   = 400
	memoryLimit = 512 << 20
)

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(memoryLimit)
	}
	// KILN_CPUPROFILE=FILE writes a CPU profile of the run (for benchmarks).
	if p := os.Getenv("KILN_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx)
	stop()
	if code != 0 {
		pprof.StopCPUProfile()
		os.Exit(code)
	}
}
