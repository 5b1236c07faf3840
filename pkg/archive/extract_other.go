//go:build !linux

package archive

import (
	"fmt"
	"io"
	"runtime"
)

// Extract applies one layer onto dir. Safe extraction relies on Linux's
// openat2 and O_PATH; other systems are not supported.
func Extract(r io.Reader, dir string, opts ExtractOptions) error {
	return fmt.Errorf("extract to %s: not supported on %s", dir, runtime.GOOS)
}

// SyncFS is not supported on this system.
func SyncFS(dir string) error {
	return fmt.Errorf("sync %s: not supported on %s", dir, runtime.GOOS)
}
