package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/sandbox/confine"
)

// DoctorOptions say what Diagnose looks at.
type DoctorOptions struct {
	// Mode is --isolation ("" for auto).
	Mode Mode
	// Exe is the helper binary (default /proc/self/exe).
	Exe string
	// Store is kiln's store directory, and StoreSource where that came
	// from (store.Location's Source).
	Store, StoreSource string
	// ScratchDir is where detection probes overlay (the directory of the
	// unpacked layers, in the store).
	ScratchDir string
}

// Finding is one setting of the environment that matters to kiln.
type Finding struct {
	// Setting names it ("seccomp", "capabilities", …).
	Setting string
	// Limits is set when the setting keeps kiln from a better mode or
	// makes it slower; such a finding is never shown as "ok".
	Limits bool
	// State is what was found.
	State string
	// Fix holds the exact lines (securityContext, pod spec, docker flag or
	// image change) that lift the limit.
	Fix []string
}

// Diagnosis is what `kiln doctor` prints.
type Diagnosis struct {
	Sandbox  *Sandbox
	Report   *Report
	Err      error // from New (a forced mode that does not work)
	Store    string
	Source   string
	Findings []Finding
	// Level is the Pod Security Standards level the settings correspond
	// to (privileged, baseline or restricted), and LevelWhy the settings
	// that place it there.
	Level, LevelWhy string
}

// env is the raw state Diagnose reads.
type env struct {
	uid, gid    int
	name        string
	seccomp     string // /proc/self/status Seccomp: 0, 1 or 2
	capEff      uint64
	capBnd      uint64
	noNewPrivs  bool
	usernsErr   error // from a clone(CLONE_NEWUSER) probe
	maxUserns   string
	inContainer bool
	procMasked  []string
	storeFS     string // "overlayfs", "tmpfs", … of the store
	tmpFS       string // of TMPDIR
}

// Diagnose runs detection (New) and looks at every setting that limits
// kiln: seccomp, capabilities, no_new_privs, user namespaces, a masked
// /proc, the store's filesystem, subordinate ids and newuidmap. Each
// limiting setting comes with the exact change that lifts it.
func Diagnose(ctx context.Context, o DoctorOptions) *Diagnosis {
	exe := o.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	d := &Diagnosis{Store: o.Store, Source: o.StoreSource}
	d.Sandbox, d.Report, d.Err = New(ctx, Options{Mode: o.Mode, Exe: exe, ScratchDir: o.ScratchDir})
	e := readEnv(exe, o.Store)
	d.Findings = append(d.Findings, seccompFinding(e), capFinding(e, d.Sandbox), nnpFinding(e), usernsFinding(e))
	d.Findings = append(d.Findings, procFinding(e, d.Sandbox), storeFinding(e, d.Sandbox, o.Store))
	if e.uid != 0 {
		d.Findings = append(d.Findings, subIDFindings(e, d.Sandbox)...)
		d.Findings = append(d.Findings, helperFindings(e, d.Sandbox)...)
	}
	d.Level, d.LevelWhy = podLevel(e)
	return d
}

func readEnv(exe, store string) *env {
	e := &env{}
	e.uid, e.gid, e.name = currentUser()
	e.seccomp = statusField("Seccomp")
	e.capEff = statusHex("CapEff")
	e.capBnd = statusHex("CapBnd")
	e.noNewPrivs = statusField("NoNewPrivs") == "1"
	if v, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
		e.maxUserns = strings.TrimSpace(string(v))
	}
	e.usernsErr = usernsProbe(exe)
	e.inContainer = inContainer()
	e.procMasked = maskedProc()
	if store != "" {
		e.storeFS = fsName(store)
	}
	e.tmpFS = fsName(os.TempDir())
	return e
}

// usernsProbe starts exe in a new user namespace (no maps: the child has
// nothing to do and exits at once) and reports whether the kernel and the
// seccomp filter allowed it.
func usernsProbe(exe string) error {
	cmd := &exec.Cmd{Path: exe, Args: []string{helperArg0}, Env: []string{},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}}
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = cmd.Wait()
	return nil
}

func inContainer() bool {
	for _, p := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return os.Getenv("KUBERNETES_SERVICE_HOST") != "" || fsName("/") == "overlayfs"
}

// maskedProc lists the /proc paths a runtime covered (Docker's and
// Kubernetes' default procMount masks /proc/kcore, /proc/keys, … and
// makes /proc/sys read-only): a fresh /proc cannot be mounted then.
func maskedProc() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || !strings.HasPrefix(f[4], "/proc/") || strings.HasPrefix(f[4], "/proc/sys/fs/binfmt_misc") {
			continue
		}
		out = append(out, f[4])
	}
	return out
}

// fsName names the filesystem dir is on (or its nearest existing parent).
func fsName(dir string) string {
	var st unix.Statfs_t
	for {
		if err := unix.Statfs(dir, &st); err == nil {
			break
		}
		parent := dir[:max(strings.LastIndexByte(dir, '/'), 0)]
		if parent == "" {
			parent = "/"
		}
		if parent == dir {
			return ""
		}
		dir = parent
	}
	switch uint32(st.Type) {
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	}
	return fmt.Sprintf("0x%x", uint32(st.Type))
}

// capNames are the capabilities doctor talks about.
var capNames = map[uint]string{0: "CHOWN", 1: "DAC_OVERRIDE", 3: "FOWNER", 4: "FSETID", 5: "KILL", 6: "SETGID", 7: "SETUID",
	8: "SETPCAP", 10: "NET_BIND_SERVICE", 13: "NET_RAW", 18: "SYS_CHROOT", 21: "SYS_ADMIN", 27: "MKNOD", 29: "AUDIT_WRITE", 31: "SETFCAP"}

// chrootCaps are what chroot mode's steps need as root (apt-get and
// useradd change owners, switch users and make device nodes).
var chrootCaps = []uint{0, 1, 3, 6, 7, 18, 27}

func capList(set uint64, caps []uint) string {
	var n []string
	for _, c := range caps {
		if set&(1<<c) != 0 {
			n = append(n, capNames[c])
		}
	}
	return strings.Join(n, ", ")
}

func missingCaps(set uint64, caps []uint) []uint {
	var out []uint
	for _, c := range caps {
		if set&(1<<c) == 0 {
			out = append(out, c)
		}
	}
	return out
}

// podLevel places the settings in the Pod Security Standards.
func podLevel(e *env) (string, string) {
	var why []string
	defaults := confine.DefaultCaps()
	if e.seccomp != "2" {
		why = append(why, "no seccomp filter (Unconfined)")
	}
	if extra := e.capBnd &^ defaults; extra != 0 {
		why = append(why, fmt.Sprintf("capabilities beyond the runtime's default set (bounding set %#x)", e.capBnd))
	}
	if len(why) > 0 {
		return "privileged", strings.Join(why, ", ")
	}
	if e.uid == 0 {
		why = append(why, "runs as root")
	}
	if e.capBnd&^(1<<10) != 0 {
		why = append(why, "capabilities not all dropped")
	}
	if !e.noNewPrivs {
		why = append(why, "privilege escalation allowed (no_new_privs unset)")
	}
	if len(why) > 0 {
		return "baseline", strings.Join(why, ", ")
	}
	return "restricted", "non-root, a seccomp filter, all capabilities dropped, no privilege escalation"
}

// Write prints the diagnosis.
func (d *Diagnosis) Write(w io.Writer) {
	s := d.Sandbox
	if s != nil {
		fmt.Fprintf(w, "isolation: %s\n  why: %s\n", s.Mode(), s.Reason())
		if s.Mode() != ModeNone {
			diff := "overlay upper directory"
			if !s.Overlay() {
				diff = "working copy and metadata walk"
			}
			fmt.Fprintf(w, "  diffs: %s\n", diff)
		}
	} else {
		fmt.Fprintf(w, "isolation: none\n  why: %v\n", d.Err)
	}
	if d.Store != "" {
		fmt.Fprintf(w, "store: %s (from %s)\n", d.Store, d.Source)
	}
	fmt.Fprintln(w, "settings:")
	for _, f := range d.Findings {
		mark := "ok    "
		if f.Limits {
			mark = "LIMITS"
		}
		fmt.Fprintf(w, "  [%s] %s: %s\n", mark, f.Setting, f.State)
		for _, l := range f.Fix {
			fmt.Fprintf(w, "           fix: %s\n", l)
		}
	}
	if d.Report != nil {
		// What detection tried and could not do, where the settings
		// above do not already say it.
		covered := map[string]bool{"seccomp": true, "CAP_SYS_ADMIN": true, "CAP_SYS_CHROOT": true, "subordinate ids": true,
			"user namespace": true, "user.max_user_namespaces": true, "/proc": true, "newuidmap": true, "newgidmap": true}
		for _, c := range d.Report.Checks {
			if !c.OK && !covered[c.Name] {
				fmt.Fprintf(w, "  [LIMITS] detection: %s: %s\n", c.Name, c.Detail)
			}
		}
	}
	fmt.Fprintf(w, "pod security level of these settings: %s (%s)\n", d.Level, d.LevelWhy)
	fmt.Fprintln(w, "what each level gives kiln (shortest securityContext first):")
	for _, l := range levelModes(d.ptrace()) {
		fmt.Fprintf(w, "  %-10s %s\n             -> %s\n", l[0], l[1], l[2])
	}
	if s != nil && s.SingleMapping() {
		fmt.Fprintln(w, "note: "+s.warning)
	}
}

func (d *Diagnosis) ptrace() bool {
	_, err := ParseMode("ptrace")
	return err == nil
}

// levelModes are the Pod Security Standards levels, the shortest
// securityContext of each, and the modes kiln gets there.
func levelModes(ptrace bool) [][3]string {
	fallback := "none: builds without RUN work, RUN steps fail"
	if ptrace {
		fallback = "ptrace (RUN works, slower; root emulated, owners recorded)"
	}
	return [][3]string{
		{"privileged", "securityContext: {runAsUser: 1000, seccompProfile: {type: Unconfined}, allowPrivilegeEscalation: true}",
			"userns with /etc/subuid ranges and newuidmap/newgidmap with file capabilities in the image (else one id mapped); overlay diffs when the store is on an emptyDir"},
		{"baseline", "securityContext: {runAsUser: 0}   (the runtime's default seccomp profile and capabilities)",
			"chroot as root (userns where the runtime's seccomp profile allows user namespaces); as non-root: " + fallback},
		{"restricted", "securityContext: {runAsNonRoot: true, runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}",
			fallback},
	}
}

func seccompFinding(e *env) Finding {
	f := Finding{Setting: "seccomp"}
	switch e.seccomp {
	case "0", "":
		f.State = "no filter (Unconfined)"
	case "1":
		f.State, f.Limits = "strict mode: almost every system call is refused", true
	default:
		f.State = "a filter is active (mode 2: the runtime's default profile or a custom one)"
		if e.usernsErr != nil && e.maxUserns != "0" {
			f.Limits = true
			f.State += ", and it refuses new user namespaces (" + e.usernsErr.Error() + ")"
			f.Fix = []string{
				"pod: securityContext.seccompProfile: {type: Unconfined}   (or a Localhost profile that allows unshare/clone with CLONE_NEWUSER)",
				"docker: --security-opt seccomp=unconfined",
			}
		}
	}
	return f
}

func capFinding(e *env, s *Sandbox) Finding {
	f := Finding{Setting: "capabilities", State: fmt.Sprintf("effective %#x [%s], bounding %#x", e.capEff, capList(e.capEff, sortedCaps()), e.capBnd)}
	if e.uid != 0 {
		if e.capBnd&(1<<6) == 0 || e.capBnd&(1<<7) == 0 {
			f.State += "; SETUID/SETGID are not in the bounding set: newuidmap/newgidmap cannot map subordinate ids"
			f.Limits = true
			f.Fix = []string{"pod: securityContext.capabilities: {drop: [ALL], add: [SETUID, SETGID]}   (docker: --cap-add SETUID --cap-add SETGID)"}
		}
		return f
	}
	if missing := missingCaps(e.capEff, chrootCaps); len(missing) > 0 {
		f.Limits = true
		f.State += "; root without " + capList(^uint64(0), missing) + ": chroot mode cannot run steps as root"
		f.Fix = []string{"pod: remove capabilities.drop [ALL] (the runtime's default set has them), or securityContext.capabilities: {drop: [ALL], add: [CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID, SYS_CHROOT, MKNOD]}",
			"docker: no --cap-drop ALL (or --cap-add for those)"}
	} else if e.capEff&(1<<21) == 0 && (s == nil || s.Mode() != ModeUserns) {
		f.Limits = true
		f.State += "; root without SYS_ADMIN: no mount namespace, so no overlay, RUN --mount isolation or pid separation"
		f.Fix = []string{"pod: securityContext.seccompProfile: {type: Unconfined} lets root use a user namespace instead (userns mode); adding SYS_ADMIN would make the pod privileged-level"}
	}
	return f
}

func sortedCaps() []uint {
	return []uint{0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 21, 27, 29, 31}
}

func nnpFinding(e *env) Finding {
	f := Finding{Setting: "no_new_privs", State: "unset: setuid and file-capability helpers gain their privileges"}
	if !e.noNewPrivs {
		return f
	}
	f.State = "set (allowPrivilegeEscalation: false / no-new-privileges)"
	if e.uid == 0 {
		f.State += ": no effect on root"
		return f
	}
	f.Limits = true
	f.State += ": newuidmap/newgidmap cannot gain the right to map subordinate ids, so at most one id is mapped"
	f.Fix = []string{"pod: securityContext.allowPrivilegeEscalation: true", "docker: no --security-opt no-new-privileges"}
	return f
}

func usernsFinding(e *env) Finding {
	f := Finding{Setting: "user namespaces", State: "max_user_namespaces = " + e.maxUserns}
	if e.usernsErr == nil {
		f.State += "; a new user namespace can be made"
		return f
	}
	f.Limits = true
	f.State += "; unshare(CLONE_NEWUSER) refused: " + e.usernsErr.Error()
	switch {
	case e.maxUserns == "0":
		f.Fix = []string{"node: sysctl -w user.max_user_namespaces=28633 (a node setting, not a pod one)"}
	case e.seccomp == "2":
		f.Fix = []string{"pod: securityContext.seccompProfile: {type: Unconfined}", "docker: --security-opt seccomp=unconfined"}
	default:
		f.Fix = []string{"node: kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile allowing userns; pod: securityContext.appArmorProfile: {type: Unconfined}"}
	}
	return f
}

func procFinding(e *env, s *Sandbox) Finding {
	f := Finding{Setting: "/proc"}
	if len(e.procMasked) == 0 {
		f.State = "not masked"
		return f
	}
	f.State = fmt.Sprintf("masked by the runtime (%d paths covered, e.g. %s)", len(e.procMasked), e.procMasked[0])
	if s != nil && (s.Mode() == ModeUserns || s.Mode() == ModeRoot) && !s.freshProc {
		f.Limits = true
		f.State += ": steps get the container's /proc bound, not a /proc of their own pid namespace"
		f.Fix = []string{"pod: securityContext.procMount: Unmasked (needs hostUsers: false)", "docker: --security-opt systempaths=unconfined"}
	} else {
		f.State += ": no effect in this mode"
	}
	return f
}

func storeFinding(e *env, s *Sandbox, store string) Finding {
	f := Finding{Setting: "store filesystem", State: fmt.Sprintf("%s on %s, TMPDIR %s on %s", store, e.storeFS, os.TempDir(), e.tmpFS)}
	onOverlay := e.storeFS == "overlayfs" || e.tmpFS == "overlayfs"
	noOverlay := s != nil && (s.Mode() == ModeUserns || s.Mode() == ModeRoot) && !s.Overlay()
	if !onOverlay && !noOverlay {
		return f
	}
	f.Limits = true
	switch {
	case e.storeFS == "overlayfs":
		f.State += ": the container's own overlayfs; overlay cannot be stacked on it, so RUN diffs use a working copy and a metadata walk (several times slower)"
	case e.tmpFS == "overlayfs":
		f.State += ": TMPDIR is on the container's own overlayfs (slow for build contexts and downloads)"
	default:
		f.State += ": overlay cannot be mounted there (" + s.overlayWhy + ")"
	}
	f.Fix = []string{
		"put the store and TMPDIR on an emptyDir volume:",
		"  pod: volumes: [{name: kiln, emptyDir: {}}]",
		"  container: volumeMounts: [{name: kiln, mountPath: /kiln}]",
		"  container: env: [{name: KILN_ROOT, value: /kiln/store}, {name: TMPDIR, value: /kiln}]",
		"  docker: -v /kiln -e KILN_ROOT=/kiln/store -e TMPDIR=/kiln",
	}
	return f
}

func subIDFindings(e *env, s *Sandbox) []Finding {
	who := e.name
	if who == "" {
		who = strconv.Itoa(e.uid)
	}
	f := Finding{Setting: "subordinate ids"}
	ranges, err := SubIDRanges("/etc/subuid", e.name, e.uid)
	if err != nil || len(ranges) == 0 {
		f.State = "no /etc/subuid range for " + who + ": only this uid can be mapped, files of other owners become root's"
		f.Limits = true
		f.Fix = []string{fmt.Sprintf("image: RUN echo %s:100000:65536 >> /etc/subuid && echo %s:100000:65536 >> /etc/subgid", who, who)}
		return []Finding{f}
	}
	f.State = fmt.Sprintf("%s has %d ids in /etc/subuid", who, total(ranges))
	if why := subIDCollision(e, who, ranges); why != "" {
		f.Limits = true
		f.State += "; " + why
		f.Fix = []string{fmt.Sprintf("image: one range of %s inside the ids this container maps, without %d and other users' ranges, e.g. %s:%d:%d in /etc/subuid and /etc/subgid",
			who, e.uid, who, suggestStart(e.uid), 65536-suggestStart(e.uid))}
	}
	return []Finding{f}
}

func suggestStart(uid int) int {
	if uid >= 65536-1024 {
		return 1
	}
	return uid + 1
}

// subIDCollision finds what would make newuidmap refuse or misuse the
// ranges: the caller's own uid inside them, another user's overlapping
// range, or ids this container does not map (a user-namespaced pod maps
// only 65536).
func subIDCollision(e *env, who string, ranges []Range) string {
	for _, r := range ranges {
		if uint32(e.uid) >= r.Start && uint32(e.uid)-r.Start < r.Count {
			return fmt.Sprintf("the range %d-%d holds this uid (%d) itself", r.Start, r.Start+r.Count-1, e.uid)
		}
	}
	if others, err := os.ReadFile("/etc/subuid"); err == nil {
		for _, l := range strings.Split(string(others), "\n") {
			p := strings.Split(strings.TrimSpace(l), ":")
			if len(p) != 3 || p[0] == who || p[0] == e.name {
				continue
			}
			st, err1 := strconv.ParseUint(p[1], 10, 32)
			n, err2 := strconv.ParseUint(p[2], 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			for _, r := range ranges {
				if uint64(r.Start) < st+n && st < uint64(r.Start)+uint64(r.Count) {
					return fmt.Sprintf("the range %d-%d overlaps %s's %d-%d", r.Start, r.Start+r.Count-1, p[0], st, st+n-1)
				}
			}
		}
	}
	outer := outerIDs()
	for _, r := range ranges {
		if !covered(outer, r) {
			return fmt.Sprintf("the range %d-%d is not mapped in this container's user namespace (uid_map: %s)", r.Start, r.Start+r.Count-1, strings.Join(strings.Fields(string(readFile("/proc/self/uid_map"))), " "))
		}
	}
	return ""
}

func readFile(p string) []byte {
	b, _ := os.ReadFile(p)
	return b
}

// outerIDs are the ids of this user namespace that are mapped (its uid_map's
// inside ranges).
func outerIDs() []Range {
	var out []Range
	for _, l := range strings.Split(string(readFile("/proc/self/uid_map")), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil {
			out = append(out, Range{Start: uint32(in), Count: uint32(n)})
		}
	}
	return out
}

func covered(outer []Range, r Range) bool {
	if len(outer) == 0 {
		return true
	}
	for _, o := range outer {
		if r.Start >= o.Start && uint64(r.Start)+uint64(r.Count) <= uint64(o.Start)+uint64(o.Count) {
			return true
		}
	}
	return false
}

func helperFindings(e *env, s *Sandbox) []Finding {
	var out []Finding
	for _, p := range []string{"newuidmap", "newgidmap"} {
		f := Finding{Setting: p}
		path := lookHelper(p)
		fi, err := os.Stat(path)
		capSet := false
		if err == nil {
			if _, xerr := unix.Getxattr(path, "security.capability", nil); xerr == nil {
				capSet = true
			}
		}
		full := s != nil && s.Mode() == ModeUserns && !s.SingleMapping()
		switch {
		case err != nil:
			f.State = "not installed"
			f.Limits = true
			f.Fix = []string{"image: RUN apt-get install -y uidmap && setcap cap_setuid+ep /usr/bin/newuidmap && setcap cap_setgid+ep /usr/bin/newgidmap"}
		case capSet:
			f.State = path + " has file capabilities"
		case fi.Mode()&os.ModeSetuid != 0:
			f.State = path + " is setuid root, without file capabilities"
			if e.inContainer && !full {
				f.Limits = true
				f.State += ": in a container the setuid copy cannot write the maps"
				f.Fix = []string{fmt.Sprintf("image: RUN chmod u-s %s && setcap cap_set%sid+ep %s", path, p[3:4], path)}
			}
		default:
			f.State = path + " is neither setuid nor has file capabilities"
			f.Limits = true
			f.Fix = []string{fmt.Sprintf("image: RUN setcap cap_set%sid+ep %s", p[3:4], path)}
		}
		out = append(out, f)
	}
	return out
}
