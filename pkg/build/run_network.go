package build

import "fmt"

// runNetwork is a RUN step's network: its --network, else the build's
// (docker build --network), else "default" (the sandbox's own). A step
// runs with host networking or none; "default" is kept as written, as
// the key has always had it.
func runNetwork(flag, build string) (string, error) {
	switch flag {
	case "", "default":
		if build == "host" || build == "none" {
			return build, nil
		}
		return flag, nil
	case "host", "none":
		return flag, nil
	}
	return "", fmt.Errorf("--network=%s is not supported (none or host)", flag)
}
