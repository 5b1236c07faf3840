package sandbox

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// How a step's disk quota (quota.go) is enforced, in every mode and
// without privileges:
//
//   - the tree the step writes (its temporary directory: overlay upper,
//     work and scratch uppers; or its working copy) is opened before the
//     step's root is entered, and measured (allocated blocks, hard links
//     once, not crossing into other filesystems) by a walk of that tree
//     only;
//   - the filesystem's available space is read (fstatfs) every tick, which
//     costs nothing: a walk runs when the filesystem has grown by half of
//     what the step may still write since the last walk; otherwise only a
//     periodic walk, every 10 s or 100 times the last walk's cost, whichever
//     is longer (at most 1% of the step's time), stands guard against
//     growth that space freed by others on the same filesystem hid from
//     the trigger; with no --disk-limit, no periodic walk runs at all;
//   - a step over its limit, or writing while the filesystem is below the
//     reserve, has its whole process tree killed; when the command exits,
//     a last walk (if the filesystem grew by half of what the step may
//     still write since the last one) catches a step that wrote past the
//     limit between two ticks.
//
// The walks are bounded, not exact: a step may overshoot by what it
// writes in one tick plus one walk, and space freed meanwhile by others
// on the same filesystem can hide a step's growth from the trigger until
// the next periodic walk. The reserve is checked every tick.
//
// The walk runs where the step's owners are visible: in the helper (root,
// userns: the namespace's root reads every file; chroot) and in kiln for
// ptrace mode (the step's files are kiln's user's; a directory the step
// made unreadable is opened up for the walk and put back).

const (
	diskTick        = 100 * time.Millisecond
	diskWalkMin     = 10 * time.Second
	diskWalkCostMul = 100
)

// diskWatch watches one step's writes.
type diskWatch struct {
	spec    *diskSpec
	root    *os.File // the measured tree
	dev     uint64
	skip    map[string]bool
	reserve int64 // bytes, for this filesystem
	base    int64 // the tree's size before the step (-1: not measured)
	avail0  int64 // available bytes when the step started
	openUp  bool

	// The last walk's measure and the available bytes then (the loop's,
	// read by the final check once the loop is done).
	size, availAtWalk int64
}

// openDiskWatch opens the tree spec measures (before the step's root is
// entered: its mounts are then never seen) and measures it where needed.
func openDiskWatch(spec *diskSpec, openUp bool) (*diskWatch, error) {
	fd, err := unix.Open(spec.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "the step's disk quota: open", Path: spec.Dir, Err: err}
	}
	w := &diskWatch{spec: spec, root: os.NewFile(uintptr(fd), spec.Dir), base: -1, openUp: openUp}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.close()
		return nil, err
	}
	w.dev = st.Dev
	if len(spec.Skip) > 0 {
		w.skip = map[string]bool{}
		for _, s := range spec.Skip {
			w.skip[strings.TrimPrefix(filepath.Clean("/"+s), "/")] = true
		}
	}
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err == nil {
		w.reserve = spec.Reserve.For(int64(sf.Blocks) * sf.Bsize)
		w.avail0 = int64(sf.Bavail) * sf.Bsize
	}
	// A working copy is measured first only when a limit needs its
	// growth (a full walk); a temporary directory is nearly empty.
	if !spec.WorkCopy || spec.Limit > 0 {
		w.base = w.measure()
	}
	w.size, w.availAtWalk = w.base, w.avail0
	return w, nil
}

func (w *diskWatch) close() {
	if w != nil && w.root != nil {
		w.root.Close()
	}
}

// avail is the filesystem's available space.
func (w *diskWatch) avail() (int64, bool) {
	var sf unix.Statfs_t
	if err := unix.Fstatfs(int(w.root.Fd()), &sf); err != nil {
		return 0, false
	}
	return int64(sf.Bavail) * sf.Bsize, true
}

// start watches the step until the returned function is called (when the
// command has exited); kill takes the step's tree down. The function
// returns why the step was stopped, or nil.
func (w *diskWatch) start(kill func()) func() *DiskError {
	done := make(chan struct{})
	verdict := make(chan *DiskError, 1)
	go func() { verdict <- w.loop(done, kill) }()
	return func() *DiskError {
		close(done)
		if e := <-verdict; e != nil {
			return e
		}
		// What the step wrote since the last walk, when the filesystem
		// grew enough for it to matter.
		if lim := w.spec.Limit; lim > 0 {
			avail, ok := w.avail()
			if !ok || w.availAtWalk-avail >= (lim-(w.size-w.base))/2 {
				if wrote := w.measure() - w.base; wrote > lim {
					return &DiskError{Limit: lim, Wrote: wrote}
				}
			}
		}
		return nil
	}
}

// loop is the watch: see the comment at the top of the file.
func (w *diskWatch) loop(done <-chan struct{}, kill func()) *DiskError {
	t := time.NewTicker(diskTick)
	defer t.Stop()
	var cost time.Duration
	last := time.Now()
	walk := func(avail int64) {
		start := time.Now()
		w.size = w.measure()
		last = time.Now()
		cost = last.Sub(start)
		w.availAtWalk = avail
	}
	for {
		select {
		case <-done:
			return nil
		case <-t.C:
		}
		avail, ok := w.avail()
		if !ok {
			continue
		}
		since := time.Since(last)
		if lim := w.spec.Limit; lim > 0 {
			headroom := lim - (w.size - w.base)
			grown := w.availAtWalk - avail
			if since >= max(diskWalkMin, diskWalkCostMul*cost) || (grown >= headroom/2 && since >= 2*cost) {
				walk(avail)
				if wrote := w.size - w.base; wrote > lim {
					kill()
					return &DiskError{Limit: lim, Wrote: wrote}
				}
			}
		}
		if w.reserve <= 0 || avail >= w.reserve {
			continue
		}
		e := &DiskError{Reserve: w.reserve, Avail: avail, Path: w.spec.Dir, Wrote: -1}
		if w.base < 0 {
			// Not measured: the filesystem's growth since the step
			// started is what it may have written.
			if w.avail0-avail > ReserveGrace {
				kill()
				return e
			}
			continue
		}
		if time.Since(last) >= max(250*time.Millisecond, 10*cost) {
			walk(avail)
		}
		if wrote := w.size - w.base; wrote > ReserveGrace {
			kill()
			e.Wrote = wrote
			return e
		}
	}
}

// measure is the tree's size on disk: allocated blocks of every entry
// below the root on the root's filesystem, a hard-linked file once.
func (w *diskWatch) measure() int64 {
	fd, err := unix.Openat(int(w.root.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	m := &duWalk{w: w, links: map[[2]uint64]bool{}}
	m.dir(fd, "", 0)
	return m.bytes
}

// duWalk is one measure.
type duWalk struct {
	w     *diskWatch
	links map[[2]uint64]bool
	bytes int64
}

// maxDuDepth bounds the walk's open directories (a step's deeper
// directories are counted as entries of their parents only).
const maxDuDepth = 1000

// dir adds the entries of the directory fd (closed when done), at rel.
func (m *duWalk) dir(fd int, rel string, depth int) {
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	for {
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			m.entry(fd, rel, n, depth)
		}
		if err != nil || len(names) == 0 {
			return // the end (io.EOF), or a directory gone meanwhile
		}
	}
}

func (m *duWalk) entry(dirFD int, rel, name string, depth int) {
	p := name
	if rel != "" {
		p = rel + "/" + name
	}
	if m.w.skip[p] {
		return
	}
	var st unix.Stat_t
	if unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Dev != m.w.dev {
		return
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && st.Nlink > 1 {
		k := [2]uint64{st.Dev, st.Ino}
		if m.links[k] {
			return
		}
		m.links[k] = true
	}
	m.bytes += st.Blocks * 512
	if !isDir || depth >= maxDuDepth {
		return
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	cfd, err := unix.Openat(dirFD, name, flags, 0)
	if err == unix.EACCES && m.w.openUp {
		// ptrace mode: the step's own directory, made unreadable by the
		// step; opened up for the walk, its mode put back.
		mode := st.Mode & 0o7777
		if unix.Fchmodat(dirFD, name, mode|0o700, 0) == nil {
			cfd, err = unix.Openat(dirFD, name, flags, 0)
			defer unix.Fchmodat(dirFD, name, mode, 0)
		}
	}
	if err != nil {
		return
	}
	m.dir(cfd, p, depth+1)
}

// killStep kills the step's whole tree from its helper: in a pid
// namespace (the helper is its init) every process in it; otherwise the
// command's session and the helper's children (a subreaper's: the rest is
// reparented to it and killed after the command's exit).
func killStep(pid int) {
	if os.Getpid() == 1 {
		_ = unix.Kill(-1, unix.SIGKILL)
		return
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	_ = unix.Kill(pid, unix.SIGKILL)
	for _, k := range childrenOf(os.Getpid()) {
		_ = unix.Kill(k, unix.SIGKILL)
	}
}

// setFsizeRlimit sets RLIMIT_FSIZE to limit, for the command to inherit
// (unless the step's --ulimit sets fsize itself or it is lower already),
// and ignores SIGXFSZ so that a write past it fails with EFBIG ("File too
// large") instead of killing the writer with a core dump.
func setFsizeRlimit(limit int64, us []Ulimit) error {
	if limit <= 0 {
		return nil
	}
	for _, u := range us {
		if u.Resource == unix.RLIMIT_FSIZE {
			return nil
		}
	}
	ignoreSIGXFSZ()
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &cur); err == nil && cur.Max != unix.RLIM_INFINITY && cur.Max < uint64(limit) {
		return nil
	}
	lim := unix.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	return unix.Setrlimit(unix.RLIMIT_FSIZE, &lim)
}

// ignoreSIGXFSZ makes the helper, and so the command it starts (an
// ignored signal stays ignored across fork and exec), ignore SIGXFSZ.
func ignoreSIGXFSZ() { signal.Ignore(unix.SIGXFSZ) }

// reportDisk tells doctor how a step's disk use is bounded (dir: where
// the store unpacks layers, "" for TMPDIR).
func reportDisk(rep *Report, dir string) {
	limit, res := DiskLimit(), DiskReserve()
	if limit == 0 && res == (Reserve{}) {
		rep.add("disk quota", false, "no limit on what a RUN step writes (--disk-limit 0, --disk-reserve 0)", "--disk-limit SIZE, or --disk-reserve auto (the default)")
		return
	}
	what := "no --disk-limit"
	if limit > 0 {
		what = "at most " + units.BytesSize(float64(limit)) + " written per RUN step (--disk-limit)"
	}
	if dir == "" {
		dir = os.TempDir()
	}
	for ; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); err == nil {
			break
		}
	}
	var sf unix.Statfs_t
	if res != (Reserve{}) && unix.Statfs(dir, &sf) == nil {
		total, avail := int64(sf.Blocks)*sf.Bsize, int64(sf.Bavail)*sf.Bsize
		what += fmt.Sprintf("; steps stop when %s has less than %s available (--disk-reserve %s; %s available now)",
			dir, units.BytesSize(float64(res.For(total))), res, units.BytesSize(float64(avail)))
	}
	rep.add("disk quota", true, what, "")
}
