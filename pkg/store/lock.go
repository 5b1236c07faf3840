package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is an flock(2) lock on one open file description. flock locks
// belong to the open file description, so two fileLocks on the same path
// exclude each other even inside one process; each acquisition therefore
// opens its own descriptor.
type fileLock struct {
	f *os.File
}

// openLockTarget opens the file (or directory) to lock, creating a missing
// lock file.
func openLockTarget(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	return f, nil
}

// lockFile opens path (creating it if needed) and takes an flock of the given
// kind (unix.LOCK_SH or unix.LOCK_EX), blocking until it is granted.
func lockFile(path string, how int) (*fileLock, error) {
	f, err := openLockTarget(path)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return &fileLock{f: f}, nil
}

// lockFileContext is lockFile that gives up when ctx is done. flock has no
// timeout, so it polls with LOCK_NB.
func lockFileContext(ctx context.Context, path string, how int) (*fileLock, error) {
	f, err := openLockTarget(path)
	if err != nil {
		return nil, err
	}
	delay := time.Millisecond
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// tryLockFD takes a non-blocking flock on an already open file and reports
// whether it was granted.
func tryLockFD(f *os.File, how int) (bool, error) {
	err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EINTR):
		return false, nil
	default:
		return false, err
	}
}

// unlock releases the lock and closes its descriptor.
func (l *fileLock) unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
