//go:build !linux

package progress

import (
	"bufio"
	"os"
	"strings"
)

// isTerminal reports whether f is a character device; without the termios
// ioctl that is the best portable guess.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ReadSecret reads one line from f. On this platform echo is not turned
// off: prefer --password-stdin.
func ReadSecret(f *os.File) (string, error) {
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
