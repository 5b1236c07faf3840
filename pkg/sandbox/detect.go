package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Check is one thing detection looked at.
type Check struct {
	Name   string
	OK     bool
	Detail string
	// Fix is what would make it work ("" when nothing is needed).
	Fix string
}

// Report is what detection found.
type Report struct {
	Mode   Mode
	Reason string
	Checks []Check
}

func (r *Report) add(name string, ok bool, detail, fix string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: detail, Fix: fix})
}

// Options tune New.
type Options struct {
	// Mode forces a mode ("" chooses the best that works).
	Mode Mode
	// Exe is the helper binary (default /proc/self/exe).
	Exe string
	// NoOverlay makes steps run on a working copy diffed by a metadata
	// walk even where overlay works (to compare the two, or to avoid an
	// overlay that misbehaves).
	NoOverlay bool
	// ScratchDir is where the probe tries overlay and /proc: a directory
	// on the filesystem that will hold the unpacked layers (the store's),
	// since overlay works on some filesystems and not others (not on a
	// container's own overlayfs). Default: the temp directory.
	ScratchDir string
}

const (
	capChroot   = 18
	capSysAdmin = 21
)

// ErrNotApplicable is wrapped by a Candidate's Try error when the mode
// does not apply to this process at all (root mode for a non-root user):
// auto-detection then does not list it among the reasons.
var ErrNotApplicable = errors.New("not applicable")

func init() {
	Register(Candidate{Mode: ModeRoot, Order: 100, Try: tryRoot})
	Register(Candidate{Mode: ModeUserns, Order: 200, Try: tryUserns})
	Register(Candidate{Mode: ModeChroot, Order: 300, Try: tryChroot})
}

// New finds the isolation this environment allows (or checks the one
// asked for) and returns a Sandbox for it with the report of what was
// looked at. A forced mode that does not work is an error; otherwise the
// worst outcome is ModeNone, which still builds Dockerfiles without RUN.
func New(ctx context.Context, opts Options) (*Sandbox, *Report, error) {
	env := &Env{Exe: opts.Exe, NoOverlay: opts.NoOverlay, ScratchDir: opts.ScratchDir, CapEff: statusHex("CapEff"), Seccomp: statusField("Seccomp") == "2"}
	if env.Exe == "" {
		env.Exe = "/proc/self/exe"
	}
	env.UID, env.GID, env.Name = currentUser()
	rep := &Report{}
	if env.Seccomp {
		rep.add("seccomp", true, "a seccomp filter is active (the default of Docker and of Kubernetes' RuntimeDefault refuses new user namespaces)", "")
	} else {
		rep.add("seccomp", true, "no seccomp filter", "")
	}
	if opts.Mode == ModeNone {
		s := &Sandbox{impl: noneMode{}, reason: "--isolation none: RUN steps are refused"}
		rep.Mode, rep.Reason = ModeNone, s.reason
		return s, rep, nil
	}
	var whyNot []string
	for _, c := range candidates() {
		if opts.Mode != "" && c.Mode != opts.Mode {
			continue
		}
		impl, reason, err := c.Try(ctx, env, rep)
		if err != nil {
			if opts.Mode != "" {
				rep.Mode, rep.Reason = ModeNone, fmt.Sprintf("%s: %v", c.Mode, err)
				return nil, rep, fmt.Errorf("--isolation %s does not work here: %v", c.Mode, err)
			}
			if !errors.Is(err, ErrNotApplicable) {
				whyNot = append(whyNot, fmt.Sprintf("%s: %v", c.Mode, err))
			}
			continue
		}
		s := &Sandbox{impl: impl, reason: reason}
		if w, ok := impl.(interface{ Warning() string }); ok {
			s.warning = w.Warning()
		}
		if p, ok := impl.(interface{ probed() (bool, string) }); ok {
			s.freshProc, s.overlayWhy = p.probed()
		}
		rep.Mode, rep.Reason = s.Mode(), s.reason
		reportNetwork(rep, s)
		reportPidsLimit(rep, s)
		reportDisk(rep, opts.ScratchDir)
		return s, rep, nil
	}
	if opts.Mode != "" {
		return nil, rep, fmt.Errorf("--isolation %s: no such mode", opts.Mode)
	}
	s := &Sandbox{impl: noneMode{}, reason: "no isolation works here (" + strings.Join(whyNot, "; ") + "): builds without RUN work, RUN steps fail"}
	rep.Mode, rep.Reason = ModeNone, s.reason
	return s, rep, nil
}

// noOverlay applies Options.NoOverlay to a built-in mode.
func noOverlay(env *Env, h *helper, reason string) string {
	if env.NoOverlay && h.overlay {
		h.overlay = false
		h.key += "-copy"
		return reason + "; overlay not used (asked)"
	}
	return reason
}

func tryRoot(ctx context.Context, env *Env, rep *Report) (Impl, string, error) {
	if env.UID != 0 {
		return nil, "", fmt.Errorf("not root: %w", ErrNotApplicable)
	}
	if !env.HasCap(capSysAdmin) {
		rep.add("CAP_SYS_ADMIN", false, "root without CAP_SYS_ADMIN (an unprivileged container): no mount namespace", "")
		return nil, "", errors.New("no CAP_SYS_ADMIN")
	}
	m := newRootMode(helper{exe: env.Exe, key: "root"})
	res, err := probe(ctx, &m.helper, env.ScratchDir)
	if err != nil {
		rep.add("namespaces", false, "creating mount/pid namespaces as root: "+err.Error(), "")
		return nil, "", err
	}
	rep.add("namespaces", true, "mount, pid, ipc and uts namespaces can be created", "")
	overlayCheck(&m.helper, res, rep)
	return m, noOverlay(env, &m.helper, "running as root with CAP_SYS_ADMIN"), nil
}

func tryChroot(_ context.Context, env *Env, rep *Report) (Impl, string, error) {
	if env.UID != 0 {
		return nil, "", fmt.Errorf("chroot mode needs root: %w", ErrNotApplicable)
	}
	if !env.HasCap(capChroot) {
		rep.add("CAP_SYS_CHROOT", false, "root without CAP_SYS_CHROOT", "keep CAP_SYS_CHROOT (it is in Docker's and Kubernetes' default set)")
		return nil, "", errors.New("no CAP_SYS_CHROOT")
	}
	rep.add("CAP_SYS_CHROOT", true, "chroot is allowed", "")
	m := newChrootMode(helper{exe: env.Exe, key: "chroot"})
	return m, "root without namespaces (no CAP_SYS_ADMIN, and new user namespaces refused): chroot into a working copy, diffs by metadata walk; no mount, pid or network separation", nil
}

func tryUserns(ctx context.Context, env *Env, rep *Report) (Impl, string, error) {
	uid, gid, name := env.UID, env.GID, env.Name
	if uid == 0 {
		return tryUsernsAsRoot(ctx, env, rep)
	}
	if v, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
		n, _ := strconv.Atoi(strings.TrimSpace(string(v)))
		rep.add("user.max_user_namespaces", n > 0, "user.max_user_namespaces = "+strings.TrimSpace(string(v)), fixIf(n == 0, "sysctl -w user.max_user_namespaces=28633 (and in /etc/sysctl.d/ to keep it)"))
	}
	if v, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil {
		on := strings.TrimSpace(string(v)) != "0"
		rep.add("kernel.unprivileged_userns_clone", on, "kernel.unprivileged_userns_clone = "+strings.TrimSpace(string(v)), fixIf(!on, "sysctl -w kernel.unprivileged_userns_clone=1"))
	}
	if v, err := os.ReadFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); err == nil {
		off := strings.TrimSpace(string(v)) == "0"
		rep.add("kernel.apparmor_restrict_unprivileged_userns", off, "kernel.apparmor_restrict_unprivileged_userns = "+strings.TrimSpace(string(v)),
			fixIf(!off, "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for kiln with the userns rule (Ubuntu 23.10+)"))
	}

	who := name
	if who == "" {
		who = strconv.Itoa(uid)
	}
	uidRanges, errU := SubIDRanges("/etc/subuid", name, uid)
	gidRanges, errG := SubIDRanges("/etc/subgid", name, uid)
	haveRanges := errU == nil && errG == nil && len(uidRanges) > 0 && len(gidRanges) > 0
	rangeFix := fmt.Sprintf("as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s (or add the line %s:100000:65536 to /etc/subuid and /etc/subgid)", who, who)
	if haveRanges {
		rep.add("subordinate ids", true, fmt.Sprintf("/etc/subuid and /etc/subgid give %s %d and %d ids", who, total(uidRanges), total(gidRanges)), "")
	} else {
		rep.add("subordinate ids", false, "no /etc/subuid and /etc/subgid ranges for "+who+": only this user is mapped, files of other owners become root's", rangeFix)
	}
	helpersOK := true
	for _, p := range []string{"newuidmap", "newgidmap"} {
		path := lookHelper(p)
		fi, err := os.Stat(path)
		capSet := false
		if err == nil {
			if _, xerr := unix.Getxattr(path, "security.capability", nil); xerr == nil {
				capSet = true
			}
		}
		switch {
		case err != nil:
			helpersOK = false
			rep.add(p, false, p+" is not installed", "apt-get install uidmap (Debian, Ubuntu); dnf install shadow-utils (Fedora)")
		case fi.Mode()&os.ModeSetuid == 0 && !capSet:
			helpersOK = false
			rep.add(p, false, path+" is neither setuid nor has file capabilities", fmt.Sprintf("setcap cap_set%sid+ep %s", p[3:4], path))
		default:
			how := "setuid root"
			if capSet {
				how = "file capabilities"
			}
			rep.add(p, true, path+" ("+how+")", "")
		}
	}

	if haveRanges && helpersOK {
		m := newUsernsMode(helper{exe: env.Exe, userns: true, newIDMap: true,
			uidMap: fullMap(uint32(uid), uidRanges), gidMap: fullMap(uint32(gid), gidRanges)})
		m.key = mapKey("userns", m.uidMap, m.gidMap)
		res, err := probe(ctx, &m.helper, env.ScratchDir)
		if err == nil {
			rep.add("user namespace", true, "created with the maps of /etc/subuid and /etc/subgid (uid map: "+res.UIDMapSeen+")", "")
			overlayCheck(&m.helper, res, rep)
			return m, noOverlay(env, &m.helper, fmt.Sprintf("user namespace, %d uids mapped from /etc/subuid", total(uidRanges)+1)), nil
		}
		rep.add("newuidmap/newgidmap", false, "writing the maps failed: "+err.Error(),
			"in a container, newuidmap and newgidmap need file capabilities: setcap cap_setuid+ep /usr/bin/newuidmap; setcap cap_setgid+ep /usr/bin/newgidmap")
	}
	m := newUsernsMode(helper{exe: env.Exe, userns: true, singleMap: true,
		uidMap: []IDMap{{0, uint32(uid), 1}}, gidMap: []IDMap{{0, uint32(gid), 1}}})
	m.key = mapKey("userns1", m.uidMap, m.gidMap)
	res, err := probe(ctx, &m.helper, env.ScratchDir)
	if err != nil {
		rep.add("user namespace", false, "unshare(CLONE_NEWUSER) refused: "+err.Error(), usernsFix)
		return nil, "", err
	}
	rep.add("user namespace", true, "created with this user alone mapped to root", "")
	overlayCheck(&m.helper, res, rep)
	m.warning = "only uid " + strconv.Itoa(uid) + " is mapped in the sandbox (no /etc/subuid range): files RUN steps give other owners belong to root, and USER runs as root. Fix: " + rangeFix
	return m, noOverlay(env, &m.helper, "user namespace, only uid "+strconv.Itoa(uid)+" mapped (no subordinate ids)"), nil
}

// identityMap maps every id of a /proc/self/{uid,gid}_map to itself.
func identityMap(file string) []IDMap {
	data, err := os.ReadFile(file)
	var out []IDMap
	if err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 {
				continue
			}
			in, err1 := strconv.ParseUint(f[0], 10, 32)
			n, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 == nil && err2 == nil && n > 0 {
				out = append(out, IDMap{uint32(in), uint32(in), uint32(n)})
			}
		}
	}
	if len(out) == 0 {
		out = []IDMap{{0, 0, 65536}}
	}
	return out
}

const usernsFix = "Kubernetes: securityContext.seccompProfile.type: Unconfined and, with AppArmor, securityContext.appArmorProfile.type: Unconfined; Docker: --security-opt seccomp=unconfined --security-opt apparmor=unconfined"

// tryUsernsAsRoot: root maps every id to itself (it needs no newuidmap),
// so owners are kept as in root mode, while the step's capabilities are
// those of a user namespace, not the host's.
func tryUsernsAsRoot(ctx context.Context, env *Env, rep *Report) (Impl, string, error) {
	// Every id this process's own namespace has (all of them on a host;
	// a pod's range with hostUsers: false), each to itself.
	uids, gids := identityMap("/proc/self/uid_map"), identityMap("/proc/self/gid_map")
	m := newUsernsMode(helper{exe: env.Exe, userns: true, uidMap: uids, gidMap: gids, key: "userns-root"})
	if !(len(uids) == 1 && uids[0] == IDMap{0, 0, 4294967295}) {
		m.key = mapKey("userns-root", uids, gids)
	}
	res, err := probe(ctx, &m.helper, env.ScratchDir)
	if err != nil {
		rep.add("user namespace", false, "unshare(CLONE_NEWUSER) as root refused: "+err.Error(), usernsFix)
		return nil, "", err
	}
	rep.add("user namespace", true, "created as root, every id mapped to itself", "")
	overlayCheck(&m.helper, res, rep)
	return m, noOverlay(env, &m.helper, "root in a user namespace of its own (every id mapped to itself)"), nil
}

func overlayCheck(s *helper, res *result, rep *Report) {
	s.overlay = res.Overlay == ""
	if s.overlay {
		rep.add("overlay", true, "overlay mounts work"+map[bool]string{true: " (userxattr)", false: ""}[s.userns], "")
	} else {
		s.overlayWhy = res.Overlay
		rep.add("overlay", false, "overlay cannot be mounted ("+res.Overlay+"): RUN uses a working copy and a metadata-walk diff", "Linux 5.11 or later mounts overlay in a user namespace")
	}
	s.freshProc = res.Proc == ""
	if s.freshProc {
		rep.add("/proc", true, "a fresh /proc can be mounted", "")
	} else {
		rep.add("/proc", true, "/proc is masked ("+res.Proc+"): the host's /proc is bound instead", "Kubernetes: securityContext.procMount: Unmasked (with hostUsers: false) gives steps their own /proc")
	}
}

func fixIf(cond bool, fix string) string {
	if cond {
		return fix
	}
	return ""
}

func total(rs []Range) uint32 {
	var n uint32
	for _, r := range rs {
		n += r.Count
	}
	return n
}

// probe runs the probe job: namespaces, maps, overlay and /proc.
func probe(ctx context.Context, s *helper, scratch string) (*result, error) {
	if scratch != "" {
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(scratch, "kiln-probe-")
	if err != nil {
		return nil, err
	}
	// Overlay leaves a mode-000 work directory: removeAll opens it up.
	defer removeAll(dir)
	res, err := s.exec(ctx, &job{Kind: jobProbe, Scratch: dir}, nil, nil, nil)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.EPERM || errno == syscall.EACCES) {
			return nil, fmt.Errorf("not permitted (%v)", err)
		}
		return nil, err
	}
	return res, nil
}

// statusField reads a field of /proc/self/status.
func statusField(name string) string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func statusHex(name string) uint64 {
	n, _ := strconv.ParseUint(statusField(name), 16, 64)
	return n
}
