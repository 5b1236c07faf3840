//go:build linux

package ptrace

import "errors"

// smallStub: the machine-code stub exists for amd64 only; on arm64 kiln
// itself is the stub (stubMain).
func smallStub() (string, error) {
	return "", errors.New("no small stub for arm64")
}
