package build

import (
	"fmt"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// runNetwork is a RUN step's network: its --network, else the build's
// (docker build --network), else "default" (the sandbox's own). A step
// runs with host networking or none; "default" (or "") is kept as
// written, as the key has always had it.
func runNetwork(flag string, build sandbox.Network) (sandbox.Network, error) {
	n, err := sandbox.ParseNetwork(flag)
	if err != nil {
		return "", fmt.Errorf("--network=%s is not supported (none or host)", flag)
	}
	if n == sandbox.NetworkDefault {
		if build == sandbox.NetworkHost || build == sandbox.NetworkNone {
			return build, nil
		}
		return sandbox.Network(flag), nil
	}
	return n, nil
}
