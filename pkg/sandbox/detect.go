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

// New finds the isolation this environment allows (or checks the one
// asked for) and returns a Sandbox for it with the report of what was
// looked at. A forced mode that does not work is an error; otherwise the
// worst outcome is ModeNone, which still builds Dockerfiles without RUN.
func New(ctx context.Context, opts Options) (*Sandbox, *Report, error) {
	exe := opts.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	rep := &Report{}
	uid, gid, name := currentUser()
	capEff := statusHex("CapEff")
	seccomp := statusField("Seccomp")
	hasCap := func(c uint) bool { return capEff&(1<<c) != 0 }
	if seccomp == "2" {
		rep.add("seccomp", true, "a seccomp filter is active (the default of Docker and of Kubernetes' RuntimeDefault refuses new user namespaces)", "")
	} else {
		rep.add("seccomp", true, "no seccomp filter", "")
	}

	var candidates []Mode
	switch {
	case opts.Mode != "":
		candidates = []Mode{opts.Mode}
	case uid == 0:
		candidates = []Mode{ModeRoot, ModeChroot}
	default:
		candidates = []Mode{ModeUserns}
	}
	var whyNot []string
	for _, m := range candidates {
		var s *Sandbox
		var err error
		switch m {
		case ModeRoot:
			s, err = tryRoot(ctx, exe, opts.ScratchDir, uid, hasCap(capSysAdmin), rep)
		case ModeUserns:
			s, err = tryUserns(ctx, exe, opts.ScratchDir, uid, gid, name, rep)
		case ModeChroot:
			s, err = tryChroot(exe, uid, hasCap(capChroot), rep)
		case ModeNone:
			s = &Sandbox{mode: ModeNone, reason: "--isolation none: RUN steps are refused", key: "none"}
		}
		if err != nil {
			whyNot = append(whyNot, fmt.Sprintf("%s: %v", m, err))
			if opts.Mode != "" {
				rep.Mode, rep.Reason = ModeNone, strings.Join(whyNot, "; ")
				return nil, rep, fmt.Errorf("--isolation %s does not work here: %v", m, err)
			}
			continue
		}
		if opts.NoOverlay && s.overlay {
			s.overlay = false
			s.reason += "; overlay not used (asked)"
			s.key += "-copy"
		}
		rep.Mode, rep.Reason = s.mode, s.reason
		return s, rep, nil
	}
	s := &Sandbox{mode: ModeNone, key: "none", reason: "no isolation works here (" + strings.Join(whyNot, "; ") + "): builds without RUN work, RUN steps fail"}
	if uid != 0 {
		s.reason = "no user namespace can be created (" + strings.Join(whyNot, "; ") + "): builds without RUN work, RUN steps fail"
	}
	rep.Mode, rep.Reason = s.mode, s.reason
	return s, rep, nil
}

func tryRoot(ctx context.Context, exe, scratch string, uid int, sysAdmin bool, rep *Report) (*Sandbox, error) {
	if uid != 0 {
		return nil, errors.New("not root")
	}
	if !sysAdmin {
		rep.add("CAP_SYS_ADMIN", false, "root without CAP_SYS_ADMIN (an unprivileged container): no mount namespace", "")
		return nil, errors.New("no CAP_SYS_ADMIN")
	}
	s := &Sandbox{mode: ModeRoot, exe: exe, key: "root"}
	res, err := probe(ctx, s, scratch)
	if err != nil {
		rep.add("namespaces", false, "creating mount/pid namespaces as root: "+err.Error(), "")
		return nil, err
	}
	rep.add("namespaces", true, "mount, pid, ipc and uts namespaces can be created", "")
	overlayCheck(s, res, rep)
	s.reason = "running as root with CAP_SYS_ADMIN"
	return s, nil
}

func tryChroot(exe string, uid int, capChroot bool, rep *Report) (*Sandbox, error) {
	if uid != 0 {
		return nil, errors.New("chroot mode needs root")
	}
	if !capChroot {
		rep.add("CAP_SYS_CHROOT", false, "root without CAP_SYS_CHROOT", "keep CAP_SYS_CHROOT (it is in Docker's and Kubernetes' default set)")
		return nil, errors.New("no CAP_SYS_CHROOT")
	}
	rep.add("CAP_SYS_CHROOT", true, "chroot is allowed", "")
	return &Sandbox{mode: ModeChroot, exe: exe, key: "chroot", reason: "root without namespaces (no CAP_SYS_ADMIN, or new namespaces refused): chroot into a working copy, diffs by metadata walk"}, nil
}

func tryUserns(ctx context.Context, exe, scratch string, uid, gid int, name string, rep *Report) (*Sandbox, error) {
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
		s := &Sandbox{mode: ModeUserns, exe: exe, newIDMap: true,
			uidMap: fullMap(uint32(uid), uidRanges), gidMap: fullMap(uint32(gid), gidRanges)}
		s.key = mapKey("userns", s.uidMap, s.gidMap)
		res, err := probe(ctx, s, scratch)
		if err == nil {
			rep.add("user namespace", true, "created with the maps of /etc/subuid and /etc/subgid (uid map: "+res.UIDMapSeen+")", "")
			overlayCheck(s, res, rep)
			s.reason = fmt.Sprintf("user namespace, %d uids mapped from /etc/subuid", total(uidRanges)+1)
			return s, nil
		}
		rep.add("newuidmap/newgidmap", false, "writing the maps failed: "+err.Error(),
			"in a container, newuidmap and newgidmap need file capabilities: setcap cap_setuid+ep /usr/bin/newuidmap; setcap cap_setgid+ep /usr/bin/newgidmap")
	}
	s := &Sandbox{mode: ModeUserns, exe: exe, singleMap: true,
		uidMap: []IDMap{{0, uint32(uid), 1}}, gidMap: []IDMap{{0, uint32(gid), 1}}}
	s.key = mapKey("userns1", s.uidMap, s.gidMap)
	res, err := probe(ctx, s, scratch)
	if err != nil {
		fix := "Kubernetes: securityContext.seccompProfile.type: Unconfined and, with AppArmor, securityContext.appArmorProfile.type: Unconfined; Docker: --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
		rep.add("user namespace", false, "unshare(CLONE_NEWUSER) refused: "+err.Error(), fix)
		return nil, err
	}
	rep.add("user namespace", true, "created with this user alone mapped to root", "")
	overlayCheck(s, res, rep)
	s.reason = "user namespace, only uid " + strconv.Itoa(uid) + " mapped (no subordinate ids)"
	s.warning = "warning: only uid " + strconv.Itoa(uid) + " is mapped in the sandbox (no /etc/subuid range): files RUN steps give other owners belong to root, and USER runs as root. Fix: " + rangeFix
	return s, nil
}

func overlayCheck(s *Sandbox, res *result, rep *Report) {
	s.overlay = res.Overlay == ""
	if s.overlay {
		rep.add("overlay", true, "overlay mounts work"+map[bool]string{true: " (userxattr)", false: ""}[s.mode == ModeUserns], "")
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
func probe(ctx context.Context, s *Sandbox, scratch string) (*result, error) {
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
	res, err := s.exec(ctx, &job{Kind: "probe", Scratch: dir}, nil, nil, nil)
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
