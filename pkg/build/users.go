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
	users, uids := map[string][2]int{}, map[int]int{}
	_, data, found, err := archive.FindFile(s.layerOpeners(), "/etc/passwd", maxAccountFile)
	if err != nil {
		return nil, fmt.Errorf("reading /etc/passwd: %w", err)
	}
	if found {
		parseColonFile(data, func(f []string) {
			if len(f) < 4 {
				return
			}
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				if _, dup := users[f[0]]; !dup {
					users[f[0]] = [2]int{uid, gid}
				}
				if _, dup := uids[uid]; !dup {
					uids[uid] = gid
				}
			}
		})
	}
	db.users, db.uids = users, uids
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
	if found {
		parseColonFile(data, func(f []string) {
			if len(f) < 3 {
				return
			}
			if gid, err := strconv.Atoi(f[2]); err == nil {
				if _, dup := groups[f[0]]; !dup {
					groups[f[0]] = gid
				}
			}
		})
	}
	db.groups = groups
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
	uid, gid := 0, 0
	if n, err := strconv.Atoi(userPart); err == nil {
		if n < 0 {
			return 0, 0, fmt.Errorf("invalid uid %q", userPart)
		}
		uid, gid = n, n
		if workdir && !hasGroup {
			d, err := s.passwd()
			if err != nil {
				return 0, 0, err
			}
			if g, ok := d.uids[n]; ok {
				gid = g
			}
		}
	} else {
		d, err := s.passwd()
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
			d, err := s.group()
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
