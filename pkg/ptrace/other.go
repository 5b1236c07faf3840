//go:build !(linux && (amd64 || arm64))

package ptrace

import (
	"context"
	"errors"
)

// ErrUnsupported: the tracer exists for linux/amd64 and linux/arm64 only.
var ErrUnsupported = errors.New("ptrace mode is only implemented for linux/amd64 and linux/arm64")

// Run fails: see ErrUnsupported.
func Run(context.Context, Config, Options) (*Result, error) { return nil, ErrUnsupported }

// Probe fails: see ErrUnsupported.
func Probe(context.Context, string) error { return ErrUnsupported }
