package harness

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CacheDir returns the directory where expensive test inputs are cached:
// $KILN_TEST_CACHE, or /var/tmp/kiln-test-cache.
func CacheDir() string {
	if d := os.Getenv("KILN_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/tmp/kiln-test-cache"
}

// Lock takes an exclusive flock on path (created if needed) and returns the
// function that releases it. Test binaries of different packages run in
// parallel; this keeps them from making the same cache entry twice.
func Lock(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		// Another user's lock file: flock works on a read-only descriptor.
		var err2 error
		if f, err2 = os.Open(path); err2 != nil {
			return nil, err
		}
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
