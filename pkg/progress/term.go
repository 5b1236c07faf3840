package progress

import (
	"io"
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

// terminalWidth is the number of columns of the terminal w, or 0 when w is
// not one (lines are then not cut).
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
