package build

import (
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// runSecurity is a RUN step's --security: "" for sandbox (the default, so
// that the key of a step that says it is the key of one that does not).
// insecure (BuildKit's privileged steps, which need the entitlement
// security.insecure) is refused: a rootless sandbox has no privileges to
// give.
func runSecurity(flag string) (string, error) {
	switch flag {
	case "", instructions.SecuritySandbox:
		return "", nil
	}
	return "", fmt.Errorf("--security=%s is not supported", flag)
}
