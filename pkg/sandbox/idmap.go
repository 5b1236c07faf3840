package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	osuser "os/user"
	"strconv"

	"github.com/moby/sys/user"
)

// IDMap maps Size ids from ContainerID (inside the user namespace) to
// HostID.
type IDMap struct {
	ContainerID, HostID, Size uint32
}

// Range is a subordinate id range of /etc/subuid or /etc/subgid.
type Range struct {
	Start, Count uint32
}

// SubIDRanges returns the ranges file (/etc/subuid or /etc/subgid) gives
// the user name or numeric id, in file order.
func SubIDRanges(file, name string, id int) ([]Range, error) {
	ids, err := user.ParseSubIDFileFilter(file, func(e user.SubID) bool {
		return (e.Name == name || e.Name == strconv.Itoa(id)) &&
			e.SubID >= 0 && e.SubID <= math.MaxUint32 && e.Count > 0 && e.Count <= math.MaxUint32
	})
	if err != nil {
		return nil, err
	}
	var out []Range
	for _, e := range ids {
		out = append(out, Range{Start: uint32(e.SubID), Count: uint32(e.Count)})
	}
	return out, nil
}

// fullMap maps 0 to the caller's id and 1.. to the subordinate ranges.
func fullMap(own uint32, ranges []Range) []IDMap {
	m := []IDMap{{ContainerID: 0, HostID: own, Size: 1}}
	next := uint32(1)
	for _, r := range ranges {
		m = append(m, IDMap{ContainerID: next, HostID: r.Start, Size: r.Count})
		next += r.Count
	}
	return m
}

// mapKey names a pair of maps for the rootfs store.
func mapKey(prefix string, uids, gids []IDMap) string {
	h := sha256.New()
	fmt.Fprintf(h, "%v|%v", uids, gids)
	return prefix + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// mapArgs renders maps as newuidmap/newgidmap arguments.
func mapArgs(m []IDMap) []string {
	var out []string
	for _, e := range m {
		out = append(out, strconv.FormatUint(uint64(e.ContainerID), 10), strconv.FormatUint(uint64(e.HostID), 10), strconv.FormatUint(uint64(e.Size), 10))
	}
	return out
}

// currentUser returns the caller's uid, gid and user name ("" when the
// uid has no name).
func currentUser() (uid, gid int, name string) {
	uid, gid = os.Getuid(), os.Getgid()
	if u, err := osuser.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	return uid, gid, name
}
