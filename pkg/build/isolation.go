package build

import (
	"context"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// Isolation is how RUN steps (and kiln run's container) are isolated:
// either a sandbox mode, detected when a step first needs a sandbox
// (Detect; the zero Isolation detects the best mode that works), or a
// sandbox already detected (Use: a caller running many builds detects
// once).
type Isolation struct {
	mode sandbox.Mode
	sb   *sandbox.Sandbox
}

// Detect isolates in mode ("" = the best that works), detected when a
// step first needs a sandbox.
func Detect(mode sandbox.Mode) Isolation { return Isolation{mode: mode} }

// Use isolates with sb.
func Use(sb *sandbox.Sandbox) Isolation { return Isolation{sb: sb} }

// sandbox returns the sandbox, detecting it (overlay probed in scratch,
// where the layers will be unpacked) unless it was given; detected says
// which.
func (i Isolation) sandbox(ctx context.Context, scratch string) (sb *sandbox.Sandbox, detected bool, err error) {
	if i.sb != nil {
		return i.sb, false, nil
	}
	sb, _, err = sandbox.New(ctx, sandbox.Options{Mode: i.mode, ScratchDir: scratch})
	return sb, err == nil, err
}
