package build

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/pkg/archive"
)

// userDB holds the entries of a stage's /etc/passwd and /etc/group, read
// lazily from the topmost layers that hold them.
type userDB struct {
	users  map[string][2]int // name -> uid, primary gid
	groups map[string]int
	uids   map[int]int // uid -> primary gid
}

const maxAccountFile = 16 << 20

func (s *stageState) userDB() (*userDB, error) {
	if s.users != nil {
		return s.users, nil
	}
	db := &userDB{users: map[string][2]int{}, groups: map[string]int{}, uids: map[int]int{}}
	ops := s.layerOpeners()
	if _, data, found, err := archive.FindFile(ops, "/etc/passwd", maxAccountFile); err != nil {
		return nil, fmt.Errorf("reading /etc/passwd: %w", err)
	} else if found {
		parseColonFile(data, func(f []string) {
			if len(f) < 4 {
				return
			}
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				if _, dup := db.users[f[0]]; !dup {
					db.users[f[0]] = [2]int{uid, gid}
				}
				if _, dup := db.uids[uid]; !dup {
					db.uids[uid] = gid
				}
			}
		})
	}
	if _, data, found, err := archive.FindFile(ops, "/etc/group", maxAccountFile); err != nil {
		return nil, fmt.Errorf("reading /etc/group: %w", err)
	} else if found {
		parseColonFile(data, func(f []string) {
			if len(f) < 3 {
				return
			}
			if gid, err := strconv.Atoi(f[2]); err == nil {
				if _, dup := db.groups[f[0]]; !dup {
					db.groups[f[0]] = gid
				}
			}
		})
	}
	s.users = db
	return db, nil
}

func parseColonFile(data []byte, fn func([]string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}

// resolveOwner turns "user[:group]" (names or numbers) into ids. Numbers
// need no lookup, so a build with numeric --chown reads no base layer.
// Without a group, a named user gets its primary group and a numeric uid the
// same number as gid (docker's rule). For USER (workdir true) a numeric uid
// takes its primary group from /etc/passwd when listed there.
func (s *stageState) resolveOwner(_ context.Context, spec string, workdir bool) (int, int, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		return 0, 0, fmt.Errorf("invalid owner %q", spec)
	}
	var db *userDB
	lookup := func() (*userDB, error) {
		if db == nil {
			var err error
			if db, err = s.userDB(); err != nil {
				return nil, err
			}
		}
		return db, nil
	}
	uid, gid := 0, 0
	if n, err := strconv.Atoi(userPart); err == nil {
		if n < 0 {
			return 0, 0, fmt.Errorf("invalid uid %q", userPart)
		}
		uid, gid = n, n
		if workdir && !hasGroup {
			d, err := lookup()
			if err != nil {
				return 0, 0, err
			}
			if g, ok := d.uids[n]; ok {
				gid = g
			}
		}
	} else {
		d, err := lookup()
		if err != nil {
			return 0, 0, err
		}
		u, ok := d.users[userPart]
		if !ok {
			return 0, 0, fmt.Errorf("unknown user %q: not in the image's /etc/passwd", userPart)
		}
		uid, gid = u[0], u[1]
	}
	if hasGroup {
		if groupPart == "" {
			return 0, 0, fmt.Errorf("invalid owner %q", spec)
		}
		if n, err := strconv.Atoi(groupPart); err == nil {
			if n < 0 {
				return 0, 0, fmt.Errorf("invalid gid %q", groupPart)
			}
			gid = n
		} else {
			d, err := lookup()
			if err != nil {
				return 0, 0, err
			}
			g, ok := d.groups[groupPart]
			if !ok {
				return 0, 0, fmt.Errorf("unknown group %q: not in the image's /etc/group", groupPart)
			}
			gid = g
		}
	}
	return uid, gid, nil
}
