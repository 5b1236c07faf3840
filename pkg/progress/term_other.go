//go:build !linux

package progress

import "os"

// isTerminal reports whether f is a character device; without the termios
// ioctl that is the best portable guess.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
