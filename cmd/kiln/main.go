// Command kiln builds, tags and pushes container images without a daemon and
// without privileges.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-build/kiln/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx)
	stop()
	os.Exit(code)
}
