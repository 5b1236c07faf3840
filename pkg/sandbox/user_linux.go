package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
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

// resolveUserIn is resolveUser with the files of the root directory root
// (runc's rules, from github.com/moby/sys/user).
func resolveUserIn(root, spec string) (*execUser, error) {
	userArg, groupArg, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupArg == "" {
		return nil, fmt.Errorf("invalid user %q", spec)
	}
	if userArg == "" {
		userArg = "0"
	}
	spec = userArg
	if hasGroup {
		spec += ":" + groupArg
	}
	passwd := root + "/etc/passwd"
	eu, err := user.GetExecUserPath(spec, &user.ExecUser{Home: "/"}, passwd, root+"/etc/group")
	if err != nil {
		return nil, err
	}
	u := &execUser{uid: uint32(eu.Uid), gid: uint32(eu.Gid), home: eu.Home}
	if hasGroup {
		return u, nil
	}
	listed, _ := user.ParsePasswdFileFilter(passwd, func(e user.User) bool { return e.Name == userArg || strconv.Itoa(e.Uid) == userArg })
	if len(listed) == 0 {
		return u, nil
	}
	// The primary group first, as containerd sets additional gids.
	u.groups = []uint32{u.gid}
	for _, g := range eu.Sgids {
		if uint32(g) != u.gid {
			u.groups = append(u.groups, uint32(g))
		}
	}
	return u, nil
}
