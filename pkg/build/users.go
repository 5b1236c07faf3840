package build

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/sys/user"

	"github.com/kiln-build/kiln/pkg/archive"
)

// userDB holds the entries of a stage's /etc/passwd and /etc/group, read
// lazily from the topmost layers that hold them.
type userDB struct {
	users  map[string][2]int // name -> uid, primary gid
	groups map[string]int
	// hasPasswd and hasGroup: the files exist in the image.
	hasPasswd, hasGroup bool
}

const maxAccountFile = 16 << 20

func (s *stageState) userDB() *userDB {
	if s.users == nil {
		s.users = &userDB{}
	}
	return s.users
}

// passwd reads /etc/passwd on first use.
func (s *stageState) passwd() (*userDB, error) {
	db := s.userDB()
	if db.users != nil {
		return db, nil
	}
	users := map[string][2]int{}
	_, data, found, err := archive.FindFile(s.layerOpeners(), "/etc/passwd", maxAccountFile)
	if err != nil {
		return nil, fmt.Errorf("reading /etc/passwd: %w", err)
	}
	db.hasPasswd = found
	if found {
		entries, err := user.ParsePasswd(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading /etc/passwd: %w", err)
		}
		for _, e := range entries {
			if _, dup := users[e.Name]; !dup && e.Name != "" {
				users[e.Name] = [2]int{e.Uid, e.Gid}
			}
		}
	}
	db.users = users
	return db, nil
}

// group reads /etc/group on first use.
func (s *stageState) group() (*userDB, error) {
	db := s.userDB()
	if db.groups != nil {
		return db, nil
	}
	groups := map[string]int{}
	_, data, found, err := archive.FindFile(s.layerOpeners(), "/etc/group", maxAccountFile)
	if err != nil {
		return nil, fmt.Errorf("reading /etc/group: %w", err)
	}
	db.hasGroup = found
	if found {
		entries, err := user.ParseGroup(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading /etc/group: %w", err)
		}
		for _, e := range entries {
			if _, dup := groups[e.Name]; !dup && e.Name != "" {
				groups[e.Name] = e.Gid
			}
		}
	}
	db.groups = groups
	return db, nil
}

// resolveOwner turns "user[:group]" (names or numbers) into ids for the
// files a step writes (COPY/ADD --chown, WORKDIR under USER), as BuildKit's
// file operations do: a number, or "root", needs no lookup (so a build with
// numeric --chown reads no base layer, and root works in an image without
// /etc/passwd); a numeric user's group is the same number, a named user's
// its primary group from /etc/passwd; a group, when given, wins. A name the
// file does not list gets id 0 (a group name: the user's gid) with a
// warning, as BuildKit does; a missing file is an error (docker 20.10's
// BuildKit fails there too).
func (s *stageState) resolveOwner(_ context.Context, spec string) (int, int, error) {
	userPart, groupPart, _ := strings.Cut(spec, ":")
	if userPart == "" {
		return 0, 0, fmt.Errorf("invalid owner %q", spec)
	}
	var uid, gid int
	if n, ok := numericID(userPart); ok {
		uid, gid = n, n
	} else {
		d, err := s.passwd()
		if err != nil {
			return 0, 0, err
		}
		u, found := d.users[userPart]
		if !found && !d.hasPasswd {
			return 0, 0, fmt.Errorf("unknown user %q: the image has no /etc/passwd", userPart)
		}
		if !found {
			// BuildKit's file operations leave a name /etc/passwd does not
			// list at uid 0 and gid 0: the same image, with a warning
			// BuildKit does not give.
			s.b.opts.Progress.Warnf("", "user %q is not in the image's /etc/passwd: its files get uid 0 and gid 0, as with BuildKit", userPart)
		}
		uid, gid = u[0], u[1]
	}
	if groupPart == "" {
		// "user:" is "user" (BuildKit's rule).
		return uid, gid, nil
	}
	if n, ok := numericID(groupPart); ok {
		return uid, n, nil
	}
	d, err := s.group()
	if err != nil {
		return 0, 0, err
	}
	g, found := d.groups[groupPart]
	if !found && !d.hasGroup {
		return 0, 0, fmt.Errorf("unknown group %q: the image has no /etc/group", groupPart)
	}
	if !found {
		// BuildKit keeps the user's gid for a group name it cannot find.
		s.b.opts.Progress.Warnf("", "group %q is not in the image's /etc/group: its files keep gid %d, as with BuildKit", groupPart, gid)
		return uid, gid, nil
	}
	return uid, g, nil
}

// numericID parses an id that needs no lookup: a number or "root" (0).
// ok is false for anything else, a name to look up.
func numericID(s string) (int, bool) {
	if s == "root" {
		return 0, true
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return int(n), err == nil
}

// runUser is the USER a RUN step's sandbox resolves: "root" stands for id
// 0 wherever it appears, as in BuildKit, so that `USER root` and
// `USER root:root` work in an image without /etc/passwd or /etc/group
// (a root listed there resolves the same by its id).
func runUser(spec string) string {
	u, g, hasGroup := strings.Cut(spec, ":")
	if u == "root" {
		u = "0"
	}
	if !hasGroup {
		return u
	}
	if g == "root" {
		g = "0"
	}
	return u + ":" + g
}
