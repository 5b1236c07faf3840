package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPidsLimit is how many processes and threads a RUN step may have
// at once (podman's --pids-limit; docker build has no default, and a fork
// bomb in a step takes the machine down). 4096 leaves room for parallel
// compilers and JVM builds.
const DefaultPidsLimit = 4096

// PidsLimitEnv sets the limit when kiln's --pids-limit does not.
const PidsLimitEnv = "KILN_PIDS_LIMIT"

var pidsLimit atomic.Int64

func init() {
	pidsLimit.Store(DefaultPidsLimit)
	if v := os.Getenv(PidsLimitEnv); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			SetPidsLimit(n)
		}
	}
}

// SetPidsLimit sets the pids limit of the RUN steps this process runs;
// 0 or less: no limit.
func SetPidsLimit(n int64) {
	if n < 0 {
		n = 0
	}
	pidsLimit.Store(n)
}

// PidsLimit is the current pids limit (0: none).
func PidsLimit() int64 { return pidsLimit.Load() }

// How a step's pids limit is enforced:
//
//   - as root (whose uid 0 RLIMIT_NPROC never stops), a pids cgroup of
//     the step's own below <pids hierarchy>/kiln, which the helper joins
//     before it reads its job (so before the command starts);
//   - otherwise, in a user namespace, RLIMIT_NPROC, which the kernel
//     counts per user namespace and uid: the step's processes of one uid,
//     whatever the rest of the host runs as that user.

// stepCgroup is a pids cgroup made for one helper.
type stepCgroup struct{ dir string }

var (
	cgroupOnce sync.Once
	cgroupBase string // <pids hierarchy>/kiln, "" when unusable
	cgroupWhy  string
)

// pidsCgroupBase finds the pids controller's hierarchy under
// /sys/fs/cgroup and makes kiln's directory in it, once.
func pidsCgroupBase() (string, string) {
	cgroupOnce.Do(func() { cgroupBase, cgroupWhy = findPidsBase("/sys/fs/cgroup") })
	return cgroupBase, cgroupWhy
}

// findPidsBase finds the pids controller's hierarchy mounted at fsRoot
// (cgroup v2's unified one, or v1's pids below it) and makes kiln's
// directory in it, with the controller on for its children (v2); it
// returns the directory, or "" and why not.
func findPidsBase(fsRoot string) (base, why string) {
	var root string
	if data, err := os.ReadFile(filepath.Join(fsRoot, "cgroup.controllers")); err == nil {
		if !strings.Contains(" "+strings.TrimSpace(string(data))+" ", " pids ") {
			return "", "cgroup v2 without the pids controller"
		}
		root = fsRoot
	} else if fi, err := os.Stat(filepath.Join(fsRoot, "pids", "cgroup.procs")); err == nil && fi.Mode().IsRegular() {
		root = filepath.Join(fsRoot, "pids")
	} else {
		return "", "no pids cgroup controller mounted at " + fsRoot
	}
	base = filepath.Join(root, "kiln")
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", "cannot make " + base + ": " + err.Error()
	}
	if root == fsRoot {
		// v2: the controller must be on for kiln's children.
		_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+pids"), 0o644)
		if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+pids"), 0o644); err != nil {
			return "", "cannot enable the pids controller in " + base + ": " + err.Error()
		}
	}
	// Cgroups of helpers a killed kiln left behind: empty ones go (a
	// populated one refuses rmdir).
	if ents, err := os.ReadDir(base); err == nil {
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
				_ = unix.Rmdir(filepath.Join(base, e.Name()))
			}
		}
	}
	return base, ""
}

// limitPids puts process pid (a helper that has not read its job yet) in
// a pids cgroup of its own with pids.max limit. It returns nil, nil where
// no cgroup can be made (the caller then relies on RLIMIT_NPROC).
func limitPids(pid int, limit int64) (*stepCgroup, error) {
	base, _ := pidsCgroupBase()
	if base == "" {
		return nil, nil
	}
	return joinPidsCgroup(base, pid, limit)
}

// joinPidsCgroup makes a cgroup below base with pids.max limit and moves
// process pid into it.
func joinPidsCgroup(base string, pid int, limit int64) (*stepCgroup, error) {
	dir := filepath.Join(base, fmt.Sprintf("step-%d-%d", pid, time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("the step's pids cgroup: %w", err)
	}
	cg := &stepCgroup{dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		cg.remove()
		return nil, fmt.Errorf("the step's pids cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		cg.remove()
		return nil, fmt.Errorf("the step's pids cgroup: %w", err)
	}
	return cg, nil
}

// remove removes the cgroup once its processes are gone (killed ones
// take a moment to leave it).
func (c *stepCgroup) remove() {
	if c == nil {
		return
	}
	for i := 0; i < 100; i++ {
		if err := unix.Rmdir(c.dir); err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pidsLimitWhere says how the pids limit is enforced for a step of a
// helper (userns: in a user namespace), or why it is not.
func pidsLimitWhere(userns bool) (how string, ok bool) {
	switch {
	case PidsLimit() <= 0:
		return "no pids limit (--pids-limit 0)", false
	case os.Geteuid() == 0:
		if base, why := pidsCgroupBase(); base == "" {
			return "no pids limit: " + why + ", and RLIMIT_NPROC does not bind root", false
		}
		return "a pids cgroup per step (" + cgroupBase + ")", true
	case userns:
		return "RLIMIT_NPROC in the step's user namespace", true
	}
	return "no pids limit in this mode", false
}

// setPidsRlimit sets RLIMIT_NPROC to limit in the helper, for the command
// to inherit, unless the step's --ulimit sets nproc itself.
func setPidsRlimit(limit int64, us []Ulimit) error {
	if limit <= 0 {
		return nil
	}
	for _, u := range us {
		if u.Resource == unix.RLIMIT_NPROC {
			return nil
		}
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &cur); err == nil && cur.Max != unix.RLIM_INFINITY && cur.Max < uint64(limit) {
		return nil // already lower
	}
	lim := unix.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	if err := unix.Setrlimit(unix.RLIMIT_NPROC, &lim); err != nil {
		return fmt.Errorf("the pids limit (RLIMIT_NPROC %d): %w", limit, err)
	}
	return nil
}

// PidsLimitHow says how this sandbox enforces the pids limit on a step
// (false: it does not, and why).
func (s *Sandbox) PidsLimitHow() (string, bool) {
	switch s.Mode() {
	case ModeRoot, ModeChroot:
		return pidsLimitWhere(false)
	case ModeUserns:
		return pidsLimitWhere(true)
	}
	return "no pids limit in " + string(s.Mode()) + " mode", false
}

// reportPidsLimit tells doctor how a step's processes are bounded.
func reportPidsLimit(rep *Report, s *Sandbox) {
	how, ok := s.PidsLimitHow()
	if ok {
		rep.add("pids limit", true, fmt.Sprintf("at most %d processes per RUN step: %s", PidsLimit(), how), "")
		return
	}
	rep.add("pids limit", false, how, "as root, a writable pids cgroup hierarchy (/sys/fs/cgroup); otherwise root or userns mode")
}
