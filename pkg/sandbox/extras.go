package sandbox

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// Extras are what docker build's --add-host, --ulimit and --shm-size give
// every RUN step (and kiln run's command).
type Extras struct {
	// Hosts are /etc/hosts lines ("IP NAME") added to the step's copy.
	Hosts []string `json:"hosts,omitempty"`
	// Ulimits are resource limits of the command.
	Ulimits []Ulimit `json:"ulimits,omitempty"`
	// ShmSize is the size of /dev/shm in bytes (0: 64 MiB, docker's).
	ShmSize int64 `json:"shmSize,omitempty"`
}

// Zero reports whether e asks for nothing.
func (e Extras) Zero() bool { return len(e.Hosts) == 0 && len(e.Ulimits) == 0 && e.ShmSize == 0 }

// Ulimit is one resource limit, as docker's --ulimit NAME=SOFT[:HARD].
type Ulimit struct {
	Name string `json:"name"`
	// Resource is the RLIMIT_ number.
	Resource int `json:"resource"`
	// Soft and Hard are the limits; -1 is unlimited.
	Soft int64 `json:"soft"`
	Hard int64 `json:"hard"`
}

// ulimitNames are the limits docker's --ulimit knows, with their RLIMIT_
// numbers (the same on every Linux architecture kiln builds for).
var ulimitNames = map[string]int{
	"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
	"memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15,
}

// ParseUlimit reads docker's --ulimit NAME=SOFT[:HARD] (-1 or unlimited:
// no limit; HARD defaults to SOFT).
func ParseUlimit(s string) (Ulimit, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return Ulimit{}, fmt.Errorf("--ulimit %q: want NAME=SOFT[:HARD] (nofile=1024:2048)", s)
	}
	res, ok := ulimitNames[name]
	if !ok {
		names := make([]string, 0, len(ulimitNames))
		for n := range ulimitNames {
			names = append(names, n)
		}
		return Ulimit{}, fmt.Errorf("--ulimit %q: unknown limit %q (one of %s)", s, name, strings.Join(sorted(names), ", "))
	}
	soft, hard, hasHard := strings.Cut(val, ":")
	u := Ulimit{Name: name, Resource: res}
	var err error
	if u.Soft, err = parseLimit(soft); err != nil {
		return Ulimit{}, fmt.Errorf("--ulimit %q: %v", s, err)
	}
	u.Hard = u.Soft
	if hasHard {
		if u.Hard, err = parseLimit(hard); err != nil {
			return Ulimit{}, fmt.Errorf("--ulimit %q: %v", s, err)
		}
	}
	if u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
		return Ulimit{}, fmt.Errorf("--ulimit %q: the soft limit exceeds the hard limit", s)
	}
	return u, nil
}

func parseLimit(s string) (int64, error) {
	if s == "unlimited" || s == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("limit %q is not a number (or -1 for none)", s)
	}
	return n, nil
}

// HostGateway is docker's --add-host NAME:host-gateway: NAME is the
// address at which the step reaches services listening on the host. It
// stays in the hosts line ("host-gateway NAME", so in cache keys too)
// until the step's network is known (gatewayAddr).
const HostGateway = "host-gateway"

// ParseAddHost reads docker's --add-host NAME:IP (or NAME=IP) as the
// hosts line "IP NAME"; NAME:host-gateway gives "host-gateway NAME".
func ParseAddHost(s string) (string, error) {
	name, ip, ok := strings.Cut(s, "=")
	if !ok {
		name, ip, ok = strings.Cut(s, ":")
	}
	if !ok || name == "" || ip == "" {
		return "", fmt.Errorf("--add-host %q: want NAME:IP", s)
	}
	if strings.ContainsAny(name, " \t\n#") {
		return "", fmt.Errorf("--add-host %q: %q is not a host name", s, name)
	}
	if ip == HostGateway {
		return HostGateway + "\t" + name, nil
	}
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if net.ParseIP(ip) == nil {
		return "", fmt.Errorf("--add-host %q: %q is not an IP address", s, ip)
	}
	return ip + "\t" + name, nil
}

// ParseShmSize reads docker's --shm-size (bytes, or with a unit: 64m, 1g).
func ParseShmSize(s string) (int64, error) {
	n, err := units.RAMInBytes(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("--shm-size %q: want a positive size (64m, 1g)", s)
	}
	return n, nil
}

// gatewayAddr is where a step on network reaches the host's services:
// on the host's network, the host's loopback (services on 127.0.0.1 and
// on all addresses); on a private network, slirp4netns's gateway, which
// then forwards to the host's loopback (startNetwork's hostLoopback). A
// step without a network has no way to the host: "".
func gatewayAddr(network Network) string {
	switch network {
	case NetworkHost:
		return "127.0.0.1"
	case NetworkPrivate:
		return privateGateway
	}
	return ""
}

// wantsGateway reports whether extra has a host-gateway line.
func wantsGateway(extra []string) bool {
	for _, l := range extra {
		if strings.HasPrefix(l, HostGateway+"\t") {
			return true
		}
	}
	return false
}

// resolveHosts turns extra's host-gateway lines into the gateway of
// network (dropped where the step has no network: its name then does not
// resolve, and nothing else answers for it).
func resolveHosts(extra []string, network Network) []string {
	if !wantsGateway(extra) {
		return extra
	}
	gw := gatewayAddr(network)
	out := make([]string, 0, len(extra))
	for _, l := range extra {
		if name, ok := strings.CutPrefix(l, HostGateway+"\t"); ok {
			if gw == "" {
				continue
			}
			l = gw + "\t" + name
		}
		out = append(out, l)
	}
	return out
}

// writeHosts writes the step's /etc/hosts into dir: the host's, or
// docker's localhost lines where the host has none, then extra (its
// host-gateway lines resolved for network).
func writeHosts(dir string, extra []string, network Network) (string, error) {
	extra = resolveHosts(extra, network)
	data, err := os.ReadFile("/etc/hosts")
	if err != nil && len(extra) == 0 {
		return "", nil
	}
	if err != nil {
		data = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	if len(extra) > 0 {
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		data = append(data, strings.Join(extra, "\n")+"\n"...)
	}
	p := filepath.Join(dir, "hosts")
	return p, os.WriteFile(p, data, 0o644)
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}
