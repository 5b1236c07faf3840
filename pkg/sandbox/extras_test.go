package sandbox

import (
	"reflect"
	"testing"
)

// TestAddHostGateway: NAME:host-gateway stays symbolic in the parsed line
// (and so in cache keys) and becomes the step network's way to the host
// when the hosts file is written.
func TestAddHostGateway(t *testing.T) {
	line, err := ParseAddHost("gw.internal:host-gateway")
	if err != nil || line != "host-gateway\tgw.internal" {
		t.Fatalf("ParseAddHost: %q, %v", line, err)
	}
	if _, err := ParseAddHost("gw internal:host-gateway"); err == nil {
		t.Error("a name with a space was taken")
	}
	extra := []string{"10.1.2.3\tdb", line}
	for network, want := range map[Network][]string{
		NetworkHost:    {"10.1.2.3\tdb", "127.0.0.1\tgw.internal"},
		NetworkPrivate: {"10.1.2.3\tdb", "10.0.2.2\tgw.internal"},
		NetworkNone:    {"10.1.2.3\tdb"},
	} {
		if got := resolveHosts(extra, network); !reflect.DeepEqual(got, want) {
			t.Errorf("network %s: %q, want %q", network, got, want)
		}
	}
	if !wantsGateway(extra) || wantsGateway(extra[:1]) {
		t.Error("wantsGateway")
	}
}

// TestParseNetwork: --network's values are parsed once into a Network; a
// step cannot ask for the private network by name (it is given).
func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]Network{"": NetworkDefault, "default": NetworkDefault, "host": NetworkHost, "none": NetworkNone} {
		if got, err := ParseNetwork(in); err != nil || got != want {
			t.Errorf("ParseNetwork(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"bridge", "private", "Host", "container:x"} {
		if got, err := ParseNetwork(bad); err == nil {
			t.Errorf("ParseNetwork(%q) = %q, want an error", bad, got)
		}
	}
}
