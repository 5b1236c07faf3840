package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/rootfs"
)

// devices are bound (or, in chroot mode, made) in the step's /dev.
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupRoot mounts the step's root filesystem and everything in it, and
// returns its path.
func setupRoot(j *job, res *result) (string, error) {
	rs := j.Run
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("private mounts: %w", err)
	}
	stubs := []rootfs.Stub{{Path: "proc", Dir: true}, {Path: "dev", Dir: true}, {Path: "sys", Dir: true}}
	if rs.Hosts != "" {
		stubs = append(stubs, rootfs.Stub{Path: "etc/hosts"})
	}
	if rs.Resolv != "" {
		stubs = append(stubs, rootfs.Stub{Path: "etc/resolv.conf"})
	}
	for _, m := range rs.Mounts {
		stubs = append(stubs, rootfs.Stub{Path: strings.TrimPrefix(filepath.Clean("/"+m.Target), "/"), Dir: !m.File})
	}
	if j.SingleMap && rs.Dir == "" {
		// Only root exists: apt's switch to its _apt user cannot work, so
		// it is told not to try, from a private layer that never reaches
		// the image.
		stubs = append(stubs, rootfs.Stub{Path: "etc/apt/apt.conf.d/00kiln-single-id", OnlyInExisting: true,
			Content: "// kiln: only root is mapped in this sandbox (no /etc/subuid range)\nAPT::Sandbox::User \"root\";\n"})
	}
	var root string
	skipped := map[string]bool{}
	if rs.Dir != "" {
		root = rs.Dir
		if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "", fmt.Errorf("bind %s: %w", root, err)
		}
		made, skip, err := makeStubsIn(root, stubs)
		if err != nil {
			return "", err
		}
		res.Created = made
		for _, s := range skip {
			skipped[s] = true
		}
	} else {
		root = rs.Target
		stubDir := filepath.Join(filepath.Dir(rs.Upper), "stubs")
		if err := os.MkdirAll(stubDir, 0o755); err != nil {
			return "", err
		}
		skip, err := rootfs.MakeStubs(stubDir, rs.Lowers, stubs)
		if err != nil {
			return "", fmt.Errorf("mount points: %w", err)
		}
		for _, s := range skip {
			skipped[s] = true
		}
		lowers := append(append([]string{}, rs.Lowers...), stubDir)
		if err := rootfs.MountOverlay(root, rs.Scratch, rootfs.OverlayOptions{Lowers: lowers, Upper: rs.Upper, Work: rs.Work, UserXattr: j.UserXattr}); err != nil {
			return "", err
		}
	}
	at := func(p string) string { return filepath.Join(root, p) }

	if !skipped["/proc"] {
		err := unix.Mount("proc", at("proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if err != nil {
			// /proc is masked (a container's default): bind the one we have.
			if err2 := unix.Mount("/proc", at("proc"), "", unix.MS_BIND|unix.MS_REC, ""); err2 != nil {
				return "", fmt.Errorf("mount /proc: %v; bind of the host's: %w", err, err2)
			}
		}
	}
	if !skipped["/dev"] {
		if err := setupDev(at("dev"), rs.ShmSize); err != nil {
			return "", err
		}
	}
	if !skipped["/sys"] {
		if err := unix.Mount("/sys", at("sys"), "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			if err := readOnly(at("sys"), true); err != nil {
				return "", fmt.Errorf("read-only /sys: %w", err)
			}
		} else {
			res.Notes = append(res.Notes, "no /sys: "+err.Error())
		}
	}
	if err := maskPaths(root, !skipped["/proc"], !skipped["/sys"]); err != nil {
		return "", err
	}
	for _, f := range []struct{ src, dst string }{{rs.Hosts, "/etc/hosts"}, {rs.Resolv, "/etc/resolv.conf"}} {
		if f.src == "" {
			continue
		}
		if skipped[f.dst] {
			res.Notes = append(res.Notes, f.dst+" is not a plain file in the image: the host's is not bound there")
			continue
		}
		if err := unix.Mount(f.src, at(f.dst), "", unix.MS_BIND, ""); err != nil {
			return "", fmt.Errorf("bind %s: %w", f.dst, err)
		}
	}
	for i, m := range rs.Mounts {
		target := filepath.Clean("/" + m.Target)
		if strings.HasPrefix(target, "/dev/") && !skipped["/dev"] {
			// /dev is the step's own tmpfs, mounted over the stubs: make
			// the mount point there (a RUN heredoc script's /dev/pipes).
			if err := devMountPoint(at(target), m.File); err != nil {
				return "", fmt.Errorf("--mount target=%s: %w", target, err)
			}
		}
		if skipped[target] {
			return "", fmt.Errorf("--mount target %s goes through a symlink or a file in the image", target)
		}
		if err := mountOne(m, at(target), filepath.Join(filepath.Dir(rs.Upper+rs.Dir), fmt.Sprintf("mnt-scratch%d", i)), j.UserXattr); err != nil {
			return "", fmt.Errorf("--mount target=%s: %w", target, err)
		}
	}
	return root, nil
}

func mountOne(m Mount, target, scratch string, userXattr bool) error {
	switch m.Type {
	case MountTmpfs:
		return unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
	case MountCache:
		return unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, "")
	case MountBind:
	default:
		return fmt.Errorf("mount type %q is not supported", m.Type)
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	if len(m.Lowers) > 0 {
		o := rootfs.OverlayOptions{Lowers: m.Lowers, UserXattr: userXattr, ReadOnly: m.ReadOnly}
		if !m.ReadOnly {
			o.Upper, o.Work = m.Upper, m.Work
		}
		merged := filepath.Join(scratch, "merged")
		if err := os.MkdirAll(merged, 0o755); err != nil {
			return err
		}
		if err := rootfs.MountOverlay(merged, scratch, o); err != nil {
			return err
		}
		sub := filepath.Clean("/" + m.Source)
		if err := checkNoSymlinks(merged, sub); err != nil {
			return err
		}
		return unix.Mount(filepath.Join(merged, sub), target, "", unix.MS_BIND|unix.MS_REC, "")
	}
	if m.ReadOnly || m.File {
		if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if m.ReadOnly {
			return readOnly(target, true)
		}
		return nil
	}
	// Writable: writes land in a scratch upper directory, never in the
	// source.
	return rootfs.MountOverlay(target, scratch, rootfs.OverlayOptions{Lowers: []string{m.Source}, Upper: m.Upper, Work: m.Work, UserXattr: userXattr})
}

// readOnly makes the mount at p read-only (with its submounts when rec).
func readOnly(p string, rec bool) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if rec {
		flags |= unix.AT_RECURSIVE
	}
	err := unix.MountSetattr(unix.AT_FDCWD, p, uint(flags), &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	if err == nil {
		return nil
	}
	// Older kernels: remount the top, keeping the flags a user namespace
	// may not drop.
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME | unix.MS_NOATIME | unix.MS_NODIRATIME)
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, "")
}

// maskedPaths are hidden from steps as runc hides them from containers
// (files covered by /dev/null, directories by an empty read-only tmpfs);
// readOnlyPaths are made read-only (host sysctls, sysrq among them).
var (
	maskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"}
	readOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// maskPaths applies maskedPaths and readOnlyPaths below root (those of
// /proc when proc, of /sys when sys).
func maskPaths(root string, proc, sys bool) error {
	want := func(p string) bool {
		return proc && strings.HasPrefix(p, "/proc/") || sys && strings.HasPrefix(p, "/sys/")
	}
	for _, p := range maskedPaths {
		if !want(p) {
			continue
		}
		t := filepath.Join(root, p)
		fi, err := os.Lstat(t)
		if err != nil {
			continue // not on this kernel
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", t, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=0555")
		} else {
			err = unix.Mount("/dev/null", t, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	for _, p := range readOnlyPaths {
		if !want(p) {
			continue
		}
		t := filepath.Join(root, p)
		if _, err := os.Lstat(t); err != nil {
			continue
		}
		if err := unix.Mount(t, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		if err := readOnly(t, true); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	return nil
}

// setupDev mounts a minimal /dev: a tmpfs with the host's null, zero,
// full, random, urandom and tty bound in, the usual symlinks, pts and shm.
func setupDev(dev string, shmSize int64) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range devices {
		p := filepath.Join(dev, d.name)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d.name, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d.name, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err == nil {
		_ = os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx"))
	}
	if shmSize <= 0 {
		_ = unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k")
		return nil
	}
	// --shm-size: asked for, so it must work.
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", shmSize)); err != nil {
		return fmt.Errorf("mount /dev/shm (--shm-size): %w", err)
	}
	return nil
}

// enterRoot makes root the process's root with pivot_root and detaches
// the old root.
func enterRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	return unix.Chdir("/")
}

// makeStubsIn creates missing mount points in a working copy, refusing to
// go through symlinks. It returns what it made (relative paths) and the
// stubs it skipped.
func makeStubsIn(root string, stubs []rootfs.Stub) (made, skipped []string, err error) {
	for _, s := range stubs {
		parts := strings.Split(s.Path, "/")
		cur := ""
		ok := true
		for i, c := range parts {
			cur = filepath.Join(cur, c)
			full := filepath.Join(root, cur)
			last := i == len(parts)-1
			var st unix.Stat_t
			err := unix.Lstat(full, &st)
			switch {
			case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && (!last || s.Dir):
				continue
			case err == nil && last && !s.Dir && st.Mode&unix.S_IFMT == unix.S_IFREG:
				continue
			case err == nil:
				ok = false
			case errors.Is(err, unix.ENOENT):
				if last && !s.Dir {
					err = os.WriteFile(full, nil, 0o644)
				} else {
					err = os.Mkdir(full, 0o755)
				}
				if err != nil {
					return made, skipped, err
				}
				made = append(made, cur)
				continue
			default:
				return made, skipped, err
			}
			break
		}
		if !ok {
			skipped = append(skipped, "/"+s.Path)
		}
	}
	return made, skipped, nil
}

// chrootSetup prepares a chroot working copy (already the root): device
// nodes made with mknod and the resolver files swapped for the host's.
// It returns what puts the resolver files back.
func chrootSetup(rs *runSpec, res *result, hosts, resolv []byte) (func(), error) {
	var stubs []rootfs.Stub
	stubs = append(stubs, rootfs.Stub{Path: "dev", Dir: true}, rootfs.Stub{Path: "proc", Dir: true}, rootfs.Stub{Path: "etc", Dir: true})
	made, _, err := makeStubsIn("/", stubs)
	if err != nil {
		return nil, err
	}
	res.Created = append(res.Created, made...)
	for _, d := range devices {
		p := "/dev/" + d.name
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("mknod %s: %v", p, err))
			continue
		}
		_ = unix.Chmod(p, 0o666)
		res.Created = append(res.Created, "dev/"+d.name)
	}
	var undo []func()
	for _, f := range []struct {
		p    string
		data []byte
	}{{"/etc/hosts", hosts}, {"/etc/resolv.conf", resolv}} {
		if f.data == nil {
			continue
		}
		var st unix.Stat_t
		err := unix.Lstat(f.p, &st)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG:
			old, rerr := os.ReadFile(f.p)
			if rerr != nil {
				continue
			}
			mode := st.Mode & 0o7777
			times := []unix.Timespec{st.Atim, st.Mtim}
			p := f.p
			undo = append(undo, func() {
				_ = os.WriteFile(p, old, os.FileMode(mode))
				_ = unix.Chmod(p, mode)
				_ = unix.UtimesNano(p, times)
			})
		case errors.Is(err, unix.ENOENT):
			p := f.p
			undo = append(undo, func() { _ = os.Remove(p) })
		default:
			continue // a symlink or something else: leave it alone
		}
		if err := os.WriteFile(f.p, f.data, 0o644); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %v", f.p, err))
		}
	}
	for _, f := range rs.chrootFiles {
		made, err := placeFile(f)
		res.Created = append(res.Created, made...)
		if err != nil {
			// Undo everything: a secret placed before must not stay in
			// the working copy (a later step's diff would see it).
			for _, u := range undo {
				u()
			}
			for i := len(res.Created) - 1; i >= 0; i-- {
				_ = os.Remove("/" + res.Created[i])
			}
			res.Created = nil
			return nil, fmt.Errorf("--mount target=%s: %w", f.target, err)
		}
	}
	created := res.Created
	res.Created = nil
	return func() {
		for _, u := range undo {
			u()
		}
		for i := len(created) - 1; i >= 0; i-- {
			_ = os.Remove("/" + created[i])
		}
	}, nil
}

// loopbackUp brings up lo in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// checkNoSymlinks refuses a path below root that goes through a symlink.
func checkNoSymlinks(root, p string) error {
	cur := root
	for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		var st unix.Stat_t
		if err := unix.Lstat(cur, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("source %s goes through a symlink", p)
		}
	}
	return nil
}

// devMountPoint makes a mount point (a file or a directory) in the step's
// /dev tmpfs.
func devMountPoint(p string, file bool) error {
	if !file {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// chrootFile is a file mount of a chroot step, copied in for the step.
type chrootFile struct {
	target string
	data   []byte
	mode   os.FileMode
}

// chrootFiles reads the file mounts of a chroot step (the only kind chroot
// mode supports; Sandbox.Run refuses the others).
func chrootFiles(ms []Mount) ([]chrootFile, error) {
	var out []chrootFile
	for _, m := range ms {
		if m.Type != MountBind || !m.File {
			continue
		}
		data, err := os.ReadFile(m.Source)
		if err != nil {
			return nil, fmt.Errorf("--mount target=%s: %w", m.Target, err)
		}
		mode := os.FileMode(0o444)
		if fi, err := os.Stat(m.Source); err == nil {
			mode = fi.Mode().Perm()
		}
		out = append(out, chrootFile{target: filepath.Clean("/" + m.Target), data: data, mode: mode})
	}
	return out, nil
}

// placeFile writes f in the working copy (the root), creating missing
// parent directories; it returns what it created (relative, parents
// first), which the step's clean-up removes. A target that exists is
// refused: chroot mode cannot mount over it.
func placeFile(f chrootFile) ([]string, error) {
	var made []string
	dir := filepath.Dir(f.target)
	var missing []string
	for d := dir; d != "/"; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err == nil {
			if !fi.IsDir() {
				return made, fmt.Errorf("%s is not a directory in the image", d)
			}
			break
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil {
			return made, err
		}
		made = append(made, strings.TrimPrefix(d, "/"))
	}
	if _, err := os.Lstat(f.target); err == nil {
		return made, fmt.Errorf("it exists in the image, and chroot mode cannot mount over it")
	}
	if err := os.WriteFile(f.target, f.data, f.mode); err != nil {
		return made, err
	}
	if err := os.Chmod(f.target, f.mode); err != nil {
		return made, err
	}
	return append(made, strings.TrimPrefix(f.target, "/")), nil
}
