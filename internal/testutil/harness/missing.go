package harness

import (
	"errors"
	"fmt"
	"os"
)

// MissingError reports that a program the test environment needs is not
// installed, and which Debian package provides it.
type MissingError struct {
	// Path is the program that was looked for, e.g. /usr/bin/docker-registry.
	Path string
	// Package is the Debian package that provides it.
	Package string
	// Detail says what is wrong when the file exists but is unusable.
	Detail string
}

func (e *MissingError) Error() string {
	what := "not found"
	if e.Detail != "" {
		what = e.Detail
	}
	return fmt.Sprintf("%s: %s: install the Debian package %s (from a kiln checkout: sudo .ci/deps)",
		e.Path, what, e.Package)
}

// IsMissing reports whether err is, or wraps, a *MissingError.
func IsMissing(err error) bool {
	var m *MissingError
	return errors.As(err, &m)
}

// NeedExecutable returns a *MissingError unless path is an executable
// regular file.
func NeedExecutable(path, pkg string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &MissingError{Path: path, Package: pkg}
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return &MissingError{Path: path, Package: pkg, Detail: "not an executable file"}
	}
	return nil
}
