package progress

import (
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// ReadSecret reads one line from the terminal f with echo turned off (a
// password prompt), and restores the terminal. The line ending is dropped.
func ReadSecret(f *os.File) (string, error) {
	b, err := term.ReadPassword(int(f.Fd()))
	return string(b), err
}
