package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// execUser is who a step's command runs as.
type execUser struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

// resolveUser resolves "user[:group]" as runc does, in the root this
// process is in: a name must be in /etc/passwd (a group name in
// /etc/group), a number need not be; a user found in /etc/passwd gets its
// primary group and, unless a group is given, the supplementary groups
// that list it in /etc/group. A numeric user that /etc/passwd lacks gets
// gid 0 and HOME /.
func resolveUser(spec string) (*execUser, error) { return resolveUserIn("", spec) }

// resolveUserIn is resolveUser with the files of the root directory root.
func resolveUserIn(root, spec string) (*execUser, error) {
	u := &execUser{home: "/"}
	if spec == "" {
		spec = "0"
	}
	userArg, groupArg, hasGroup := strings.Cut(spec, ":")
	if userArg == "" {
		userArg = "0"
	}
	if hasGroup && groupArg == "" {
		return nil, fmt.Errorf("invalid user %q", spec)
	}
	passwd, perr := readColonFile(root + "/etc/passwd")
	name := ""
	found := false
	for _, f := range passwd {
		if len(f) < 7 {
			continue
		}
		if f[0] == userArg || f[2] == userArg {
			uid, err1 := strconv.ParseUint(f[2], 10, 32)
			gid, err2 := strconv.ParseUint(f[3], 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			u.uid, u.gid, u.home, name, found = uint32(uid), uint32(gid), f[5], f[0], true
			break
		}
	}
	if !found {
		n, err := strconv.ParseUint(userArg, 10, 32)
		if err != nil {
			if perr != nil {
				return nil, fmt.Errorf("unable to find user %s: %v", userArg, perr)
			}
			return nil, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
		}
		u.uid = uint32(n)
	}
	if !hasGroup && !found {
		return u, nil
	}
	groups, gerr := readColonFile(root + "/etc/group")
	if hasGroup {
		for _, f := range groups {
			if len(f) < 3 {
				continue
			}
			if f[0] == groupArg || f[2] == groupArg {
				if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
					u.gid = uint32(gid)
					return u, nil
				}
			}
		}
		n, err := strconv.ParseUint(groupArg, 10, 32)
		if err != nil {
			if gerr != nil {
				return nil, fmt.Errorf("unable to find group %s: %v", groupArg, gerr)
			}
			return nil, fmt.Errorf("unable to find group %s: no matching entries in group file", groupArg)
		}
		u.gid = uint32(n)
		return u, nil
	}
	// The primary group first, as containerd sets additional gids.
	u.groups = append(u.groups, u.gid)
	for _, f := range groups {
		if len(f) < 4 {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if strings.TrimSpace(m) == name {
				if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(gid) != u.gid {
					u.groups = append(u.groups, uint32(gid))
				}
				break
			}
		}
	}
	return u, nil
}

// readColonFile reads /etc/passwd or /etc/group (at most 16 MiB).
func readColonFile(p string) ([][]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, sc.Err()
}
