package sandbox

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
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
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Range
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 || (parts[0] != name && parts[0] != strconv.Itoa(id)) {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		out = append(out, Range{Start: uint32(start), Count: uint32(count)})
	}
	return out, sc.Err()
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
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	return uid, gid, name
}
