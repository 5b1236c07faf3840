// Command kiln builds, tags and pushes container images without a daemon and
// without privileges.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/kiln-build/kiln/internal/cli"
)

func main() {
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
