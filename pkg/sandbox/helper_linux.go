package sandbox

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox/confine"
)

func init() {
	if len(os.Args) > 0 && os.Args[0] == helperArg0 {
		os.Exit(helperMain())
	}
}

// helperMain is the re-executed helper: it reads its job on fd 3, does it
// and reports on fd 4.
//
// A helper whose id maps newuidmap writes (argv[1] "stage1") waits for
// kiln's go-ahead (one byte on fd 3, sent once the maps are written), then
// executes itself again ("stage2") to hold its capabilities in the new
// user namespace; the second stage reads the job from the same pipe. The
// job (build arguments, secret variables) never goes through the
// environment.
func helperMain() int {
	resFile := os.NewFile(4, "result")
	report := func(r *result) int {
		if resFile != nil {
			_ = json.NewEncoder(resFile).Encode(r)
		}
		return 0
	}
	stage := ""
	if len(os.Args) > 1 {
		stage = os.Args[1]
	}
	switch stage {
	case "stage1":
		var b [1]byte
		if n, err := unix.Read(3, b[:]); n != 1 {
			return report(&result{Err: fmt.Sprintf("waiting for the id maps: %v", err)})
		}
		err := unix.Exec("/proc/self/exe", []string{helperArg0, "stage2"}, os.Environ())
		return report(&result{Err: "re-executing the helper: " + err.Error()})
	case "stage2":
		// Gaining capabilities on exec cleared the parent-death signal.
		// Set it again, then make sure kiln did not die in between (the
		// read end of the result pipe is gone then).
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
		fds := []unix.PollFd{{Fd: 4, Events: unix.POLLOUT}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return 1
		}
	}
	f := os.NewFile(3, "spec")
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return report(&result{Err: "reading the job: " + err.Error()})
	}
	var j job
	if err := json.Unmarshal(data, &j); err != nil {
		return report(&result{Err: "reading the job: " + err.Error()})
	}
	if j.Profile != "" {
		if f, err := os.Create(j.Profile); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	res, err := doJob(&j)
	if res == nil {
		res = &result{}
	}
	if err != nil {
		res.Err = err.Error()
	}
	return report(res)
}

func doJob(j *job) (*result, error) {
	if j.Userns {
		// Act as root of the namespace (the mapped caller).
		if err := unix.Setresgid(0, 0, 0); err != nil {
			return nil, fmt.Errorf("setresgid in the user namespace: %w", err)
		}
		if err := unix.Setresuid(0, 0, 0); err != nil {
			return nil, fmt.Errorf("setresuid in the user namespace: %w", err)
		}
	}
	unix.Umask(0o022)
	switch j.Kind {
	case jobProbe:
		return probeJob(j), nil
	case jobUnpack:
		return unpackJob(j)
	case jobApply:
		return applyJob(j)
	case jobDiff:
		return diffJob(j)
	case jobWalk:
		return walkJob(j)
	case jobRemove:
		yieldCPU()
		for _, p := range j.Paths {
			if err := removeAll(p); err != nil {
				return nil, err
			}
		}
		return &result{}, nil
	case jobRun:
		return runJob(j)
	case jobVerify:
		return verifyJob(j)
	}
	return nil, fmt.Errorf("unknown job %q", j.Kind)
}

// diffJob writes the upper directory j.Dest as a layer tar on stdout, in
// archive.TarWriter's normal form: kiln takes the stream as it is
// (archive.CopyLayer).
func diffJob(j *job) (*result, error) {
	bw := bufio.NewWriterSize(os.Stdout, 256<<10)
	tw := archive.NewTarWriter(bw, archive.TarOptions{})
	st, err := rootfs.WriteUpperDiff(j.Dest, j.Exclude, tw)
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	return &result{Stats: st}, err
}

// checkTarget refuses to unpack into the root filesystem.
func checkTarget(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if abs == "/" {
		return errors.New("refusing to extract into the root filesystem")
	}
	return nil
}

func unpackJob(j *job) (*result, error) {
	if err := checkTarget(j.Dest); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(j.Dest, 0o755); err != nil {
		return nil, err
	}
	var notes []string
	opts := archive.ExtractOptions{
		Chown:  j.Chown,
		OnSkip: func(name, reason string) { notes = appendNote(notes, name+": "+reason) },
		// The layer is synced before it is published (below): its
		// files go to disk as they are written.
		WriteBack: true,
	}
	target := j.Dest
	if len(j.Lowers) > 0 {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return nil, fmt.Errorf("private mounts: %w", err)
		}
		base := filepath.Dir(j.Dest)
		merged := filepath.Join(base, "merged")
		scratch := filepath.Join(base, "scratch")
		for _, d := range []string{merged, scratch, j.Work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		// Straight into the upper directory, with the layers below
		// mounted read-only for what the layer takes from them, where
		// this kernel lets the caller make whiteouts; else through an
		// overlay, which makes them itself.
		o := rootfs.OverlayOptions{Lowers: j.Lowers, UserXattr: j.UserXattr, ReadOnly: true}
		if canWhiteout(j.Work) {
			opts.Upper = &archive.UpperOptions{Lower: merged, UserXattr: j.UserXattr}
		} else {
			o.Upper, o.Work, o.ReadOnly = j.Dest, j.Work, false
			target = merged
		}
		if err := rootfs.MountOverlay(merged, scratch, o); err != nil {
			return nil, err
		}
		defer unix.Unmount(merged, unix.MNT_DETACH)
	}
	err := archive.Extract(stdinTar(), target, opts)
	if err == nil {
		// Once the layer is complete and before the store publishes it
		// (a rename, once this returns): one sync of the filesystem, no
		// fsync per file. A crash never leaves a layer directory whose
		// files are empty or missing.
		err = archive.SyncFS(j.Dest)
	}
	return &result{Notes: notes}, err
}

// canWhiteout reports whether the caller may make an overlay whiteout (a
// 0:0 character device; Linux 5.8 lets anyone) in dir.
func canWhiteout(dir string) bool {
	p := filepath.Join(dir, ".kiln-whiteout-probe")
	if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
		return false
	}
	return os.Remove(p) == nil
}

func applyJob(j *job) (*result, error) {
	if err := checkTarget(j.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(j.Dir, 0o755); err != nil {
		return nil, err
	}
	var notes []string
	err := archive.Extract(stdinTar(), j.Dir, archive.ExtractOptions{
		Chown:  j.Chown,
		OnSkip: func(name, reason string) { notes = appendNote(notes, name+": "+reason) },
	})
	return &result{Notes: notes}, err
}

// stdinTar is the helper's standard input, buffered: a tar stream's
// headers are read 512 bytes at a time. The helper owns its standard
// input, so whatever the buffer reads beyond the end of the archive was
// read from kiln's side all the same (and hashed there).
func stdinTar() io.Reader { return bufio.NewReaderSize(os.Stdin, 1<<20) }

// appendNote keeps the first notes, and a count of the rest.
func appendNote(notes []string, n string) []string {
	const max = 10
	switch {
	case len(notes) < max:
		return append(notes, n)
	case len(notes) == max:
		return append(notes, "(more skipped entries not listed)")
	}
	return notes
}

func walkJob(j *job) (*result, error) {
	// Mount points a step made go first (deepest first): they are not the
	// step's doing.
	for i := len(j.Paths) - 1; i >= 0; i-- {
		p := filepath.Join(j.Dir, filepath.Clean("/"+j.Paths[i]))
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil && (st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Size == 0) {
			_ = os.Remove(p)
		}
	}
	var before rootfs.Snapshot
	if j.SnapIn != "" {
		var err error
		if before, err = rootfs.LoadSnapshot(j.SnapIn); err != nil {
			return nil, err
		}
	}
	var after rootfs.Snapshot
	var st rootfs.DiffStats
	var err error
	if before == nil {
		after, err = rootfs.TakeSnapshot(j.Dir, j.Exclude)
	} else {
		err = writeTar(os.Stdout, func(tw *tar.Writer) error {
			var err error
			after, st, err = rootfs.WriteWalkDiff(j.Dir, before, j.Exclude, tw)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	if j.SnapOut != "" {
		if err := rootfs.SaveSnapshot(j.SnapOut, after); err != nil {
			return nil, err
		}
	}
	return &result{Stats: st}, nil
}

// removeAll removes a tree, opening up directories without permissions
// (overlay's work directories are mode 000) on the way.
func removeAll(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	openUp(p)
	return os.RemoveAll(p)
}

// openUp gives the owner full access to every directory below p (making
// each one accessible before reading it).
func openUp(p string) {
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return
	}
	_ = os.Chmod(p, 0o700)
	names, err := readDirNames(p)
	if err != nil {
		return
	}
	for _, n := range names {
		openUp(filepath.Join(p, n))
	}
}

func readDirNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// probeJob checks what works in this helper's namespaces.
func probeJob(j *job) *result {
	res := &result{}
	if data, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		res.UIDMapSeen = strings.Join(strings.Fields(string(data)), " ")
	}
	if j.Chroot {
		res.Overlay, res.Proc = "no mount namespace", "no mount namespace"
		return res
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		res.Overlay = "private mounts: " + err.Error()
		res.Proc = res.Overlay
		return res
	}
	d := j.Scratch
	for _, n := range []string{"l1", "l2", "u", "w", "m", "p", "s"} {
		if err := os.MkdirAll(filepath.Join(d, n), 0o755); err != nil {
			res.Overlay = err.Error()
			return res
		}
	}
	if err := os.WriteFile(filepath.Join(d, "l1", "f"), []byte("x"), 0o644); err != nil {
		res.Overlay = err.Error()
		return res
	}
	err := rootfs.MountOverlay(filepath.Join(d, "m"), filepath.Join(d, "s"), rootfs.OverlayOptions{
		Lowers: []string{filepath.Join(d, "l1"), filepath.Join(d, "l2")},
		Upper:  filepath.Join(d, "u"), Work: filepath.Join(d, "w"), UserXattr: j.UserXattr,
	})
	if err == nil {
		// A deletion must give a whiteout the diff can read.
		err = os.Remove(filepath.Join(d, "m", "f"))
		if err == nil {
			var st unix.Stat_t
			err = unix.Lstat(filepath.Join(d, "u", "f"), &st)
			if err == nil && !(st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0) {
				err = errors.New("deleting a lower file made no whiteout")
			}
		}
		_ = unix.Unmount(filepath.Join(d, "m"), unix.MNT_DETACH)
	}
	if err != nil {
		res.Overlay = err.Error()
	}
	if err := unix.Mount("proc", filepath.Join(d, "p"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		res.Proc = err.Error()
	} else {
		_ = unix.Unmount(filepath.Join(d, "p"), unix.MNT_DETACH)
	}
	return res
}

// runJob runs a RUN step: sets up its root, enters it and runs the
// command as this pid namespace's init.
func runJob(j *job) (*result, error) {
	rs := j.Run
	res := &result{}
	var root string
	var restore func()
	var disk *diskWatch
	if rs.Disk != nil {
		// Opened before the step's root is entered (and its mounts made).
		var err error
		if disk, err = openDiskWatch(rs.Disk, false); err != nil {
			return nil, err
		}
		defer disk.close()
	}
	if j.Chroot {
		var hosts, resolv []byte
		if rs.Hosts != "" {
			hosts, _ = os.ReadFile(rs.Hosts)
		}
		if rs.Resolv != "" {
			resolv, _ = os.ReadFile(rs.Resolv)
		}
		// File mounts (secrets, heredoc scripts) are copied in: read them
		// while the host is still visible.
		files, err := chrootFiles(rs.Mounts)
		if err != nil {
			return nil, err
		}
		rs.chrootFiles = files
		moves, err := chrootMoves(rs)
		if err != nil {
			return nil, err
		}
		// No pid namespace: the helper reaps and kills the step's tree
		// itself, through the host's /proc (kept open, never inherited).
		if fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			procFD = fd
		}
		if err := unix.Chroot(rs.Dir); err != nil {
			return nil, fmt.Errorf("chroot %s: %w", rs.Dir, err)
		}
		if err := unix.Chdir("/"); err != nil {
			return nil, err
		}
		restoreFiles, err := chrootSetup(rs, res, hosts, resolv)
		if err != nil {
			closeMoves(moves)
			return nil, err
		}
		made, undoMoves, err := placeMoves(moves)
		if err != nil {
			restoreFiles()
			removeMade(made)
			return nil, fmt.Errorf("RUN --mount: %w", err)
		}
		restore = func() {
			undoMoves()
			removeMade(made)
			restoreFiles()
		}
		chrootRestore = restore
	} else {
		var err error
		if root, err = setupRoot(j, res); err != nil {
			return nil, err
		}
		if err := enterRoot(root); err != nil {
			return nil, err
		}
		if rs.Network == NetworkNone {
			if err := loopbackUp(); err != nil {
				res.Notes = append(res.Notes, "network none: "+err.Error())
			}
		}
	}
	exit, sig, err := runCommand(j, rs, res, disk)
	if restore != nil {
		restore()
	}
	if err != nil {
		return res, err
	}
	res.Exit, res.Signal = exit, sig
	return res, nil
}

// runCommand starts the step's command as its user and waits for it.
func runCommand(j *job, rs *runSpec, res *result, disk *diskWatch) (int, string, error) {
	u, err := resolveUser(rs.User)
	if err != nil {
		return 0, "", err
	}
	if j.SingleMap && (u.uid != 0 || u.gid != 0) {
		res.Notes = append(res.Notes, fmt.Sprintf("USER %s runs as root: without subordinate ids (/etc/subuid) only root exists in the sandbox", rs.User))
		u.uid, u.gid, u.groups = 0, 0, nil
	}
	if j.SingleMap {
		if err := ignoreChown(); err != nil {
			res.Notes = append(res.Notes, "chown to other owners will fail: "+err.Error())
		}
	}
	env := rs.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+u.home)
	}
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cwd := rs.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return 0, "", fmt.Errorf("working directory %s: %w", cwd, err)
	}
	// Nothing but stdin, stdout and stderr reaches the command: not the
	// helper's job and result pipes, not what kiln itself inherited.
	closeExecFrom(3)
	prog, err := lookPath(rs.Args[0], env)
	if err != nil {
		return 0, "", err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		devnull = nil
	}
	cmd := &exec.Cmd{
		Path:   prog,
		Args:   rs.Args,
		Env:    env,
		Dir:    cwd,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Setsid: true,
			Credential: &syscall.Credential{
				Uid: u.uid, Gid: u.gid, Groups: u.groups, NoSetGroups: j.SingleMap,
			},
		},
	}
	if devnull != nil {
		cmd.Stdin = devnull
	}
	if err := confineThread(j, rs, disk); err != nil {
		return 0, "", err
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, "", fmt.Errorf("starting %s: %w", rs.Args[0], err)
	}
	stopDisk := func() *DiskError { return nil }
	if disk != nil {
		pid := cmd.Process.Pid
		stopDisk = disk.start(func() { killStep(pid) })
	}
	if j.Chroot {
		// kiln stops a step (or dies: the parent-death signal) with
		// SIGTERM: take the tree down, then go.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
		go func() {
			<-sigs
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			_ = cmd.Process.Kill()
			killDescendants()
			if chrootRestore != nil {
				// Caches back where they live, secrets out of the copy.
				chrootRestore()
			}
			os.Exit(1)
		}()
	}
	err = cmd.Wait()
	res.CmdNS = time.Since(started).Nanoseconds()
	if j.Chroot {
		killDescendants()
	}
	res.Disk = stopDisk()
	return exitStatus(err)
}

// exitStatus is the exit code of a command Wait returned err for (128+N
// and the signal's name when signal N ended it), or err when it did not
// run to an end.
func exitStatus(err error) (int, string, error) {
	if err == nil {
		return 0, "", nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), ws.Signal().String(), nil
		}
		return ee.ExitCode(), "", nil
	}
	return 0, "", err
}

// confineThread confines this thread, from which the step's command is
// then started (it is locked to this goroutine and never given back): the
// command gets docker's default capabilities, no more, docker's default
// seccomp shape with no_new_privs, and the pids, file size and --ulimit
// limits; in chroot mode the helper becomes the subreaper of what the step
// leaves running.
func confineThread(j *job, rs *runSpec, disk *diskWatch) error {
	// The command gets docker's default capabilities, no more: drop the
	// rest from this thread's bounding set and start it from this thread
	// (which is never given back).
	runtime.LockOSThread()
	var drop []int
	if rs.Network != NetworkNone {
		// The host's network namespace: no raw sockets there (sniffing
		// other processes' traffic).
		drop = append(drop, confine.CapNetRaw)
	}
	if j.Chroot {
		// A second chroot is the way out of the first.
		drop = append(drop, confine.CapSysChroot)
	}
	if err := confine.DropCaps(drop...); err != nil {
		return fmt.Errorf("dropping capabilities: %w", err)
	}
	// Docker's default seccomp shape, and no_new_privs: the step cannot
	// do more than a default container could (no ptrace and no chroot
	// where the host is that close).
	if err := (confine.Filter{NoPtrace: j.Chroot, NoChroot: j.Chroot}).Install(); err != nil {
		return fmt.Errorf("the step's seccomp filter: %w", err)
	}
	if j.Chroot {
		// No pid namespace: whatever the step leaves running (setsid
		// daemons included) is reparented to the helper, which kills it.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("subreaper: %w", err)
		}
	}
	if err := setPidsRlimit(rs.PidsLimit, rs.Ulimits); err != nil {
		return err
	}
	if disk != nil {
		if err := setFsizeRlimit(disk.spec.Limit, rs.Ulimits); err != nil {
			return fmt.Errorf("the disk limit (RLIMIT_FSIZE %d): %w", disk.spec.Limit, err)
		}
	}
	if err := setUlimits(rs.Ulimits); err != nil {
		return err
	}
	return nil
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// lookPath finds prog in env's PATH, in the step's root.
func lookPath(prog string, env []string) (string, error) {
	if strings.Contains(prog, "/") {
		return prog, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH (%s)", prog, path)
}

// chrootRestore undoes what a chroot step's set-up put in its root.
var chrootRestore func()

// removeMade removes directories made for mount points (relative to the
// root, parents first) that are still empty.
func removeMade(made []string) {
	for i := len(made) - 1; i >= 0; i-- {
		_ = unix.Rmdir("/" + made[i])
	}
}

// procFD is the host's /proc, opened before a chroot step enters its root.
var procFD = -1

// killDescendants kills every descendant of the helper (a subreaper: they
// all become its children when their parents die) and reaps them, until
// none is left.
func killDescendants() {
	self := os.Getpid()
	for round := 0; round < 1000; round++ {
		kids := childrenOf(self)
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = unix.Kill(k, unix.SIGKILL)
		}
		for _, k := range kids {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(k, &ws, 0, nil)
		}
		// Orphans of the killed, reparented meanwhile, are reaped too.
		for {
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

// childrenOf lists the processes whose parent is pid, from procFD.
func childrenOf(pid int) []int {
	if procFD < 0 {
		return nil
	}
	dfd, err := unix.Openat(procFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(dfd), "/proc")
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []int
	buf := make([]byte, 512)
	for _, n := range names {
		p, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		fd, err := unix.Openat(procFD, n+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		k, _ := unix.Read(fd, buf)
		unix.Close(fd)
		if k <= 0 {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		st := string(buf[:k])
		i := strings.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(st[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// closeExecFrom marks every open descriptor from lowest up close-on-exec
// (close_range; where the kernel lacks it, every descriptor up to the
// open-file limit).
func closeExecFrom(lowest int) {
	if err := unix.CloseRange(uint(lowest), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	var lim unix.Rlimit
	max := 1 << 16
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(max) {
		max = int(lim.Cur)
	}
	for fd := lowest; fd < max; fd++ {
		unix.CloseOnExec(fd)
	}
}
