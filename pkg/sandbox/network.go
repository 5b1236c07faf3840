package sandbox

import "fmt"

// Network is a step's network: what a Step asks for (NetworkDefault,
// NetworkHost or NetworkNone, parsed once from --network by ParseNetwork)
// and what it gets once the mode and the machine are known
// (resolveNetwork: NetworkHost, NetworkNone or NetworkPrivate,
// network_linux.go).
type Network string

// NetworkDefault asks for the best network the mode has: NetworkPrivate
// where it can be made, else NetworkHost (DefaultNetwork says why).
const NetworkDefault Network = "default"

// ParseNetwork reads a --network value (docker build's, RUN's, kiln
// run's): "" or "default", "host" or "none". NetworkPrivate is given,
// never asked for.
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case "", NetworkDefault:
		return NetworkDefault, nil
	case NetworkHost, NetworkNone:
		return n, nil
	}
	return "", fmt.Errorf("network %q is not one of default, host or none", s)
}
