package sandbox

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/rootfs"
)

// Mode is an isolation mode.
type Mode string

// The built-in isolation modes (others register themselves: see Register).
const (
	ModeUserns Mode = "userns"
	ModeRoot   Mode = "root"
	ModeChroot Mode = "chroot"
	ModeNone   Mode = "none"
)

// Sandbox runs steps in one isolation mode (an Impl, chosen by New). It is
// safe for concurrent use.
type Sandbox struct {
	impl   Impl
	reason string

	// What the probe of a built-in mode found (for doctor).
	freshProc  bool
	overlayWhy string

	warnOnce sync.Once
	warning  string
}

// Mode is the sandbox's isolation mode.
func (s *Sandbox) Mode() Mode { return s.impl.Mode() }

// Features is what the mode can do.
func (s *Sandbox) Features() Features { return s.impl.Features() }

// Reason says why this mode was chosen.
func (s *Sandbox) Reason() string { return s.reason }

// Overlay reports whether steps run on overlay mounts (else on a working
// copy diffed by a metadata walk).
func (s *Sandbox) Overlay() bool { return s.impl.Features().Overlay }

// SingleMapping reports whether only the caller is mapped (files of other
// owners collapse to root).
func (s *Sandbox) SingleMapping() bool { return s.impl.Features().Ownership == OwnersCollapsed }

// Key names the id mapping for the rootfs store.
func (s *Sandbox) Key() string { return s.impl.Key() }

// Warning returns, once, a warning about this mode, without a "warning: "
// prefix ("" after the first call or when there is none).
func (s *Sandbox) Warning() string {
	var w string
	s.warnOnce.Do(func() { w = s.warning })
	return w
}

// Summary is the mode in one line, as `kiln build` prints it.
func (s *Sandbox) Summary() string {
	line := fmt.Sprintf("isolation: %s (%s)", s.Mode(), s.reason)
	if h, ok := s.impl.(interface{ overlayNote() string }); ok {
		line += h.overlayNote()
	}
	return line
}

// ErrUnavailable is returned by jobs when the mode cannot run them.
var ErrUnavailable = errors.New("sandbox unavailable")

// helper is the engine of the built-in modes: it runs jobs in a
// re-executed helper process. self is the mode that embeds it.
type helper struct {
	self Impl
	exe  string

	userns         bool
	uidMap, gidMap []IDMap // userns: host maps
	newIDMap       bool    // write them with newuidmap/newgidmap
	singleMap      bool    // only the caller is mapped
	overlay        bool    // overlay mounts work in this mode
	overlayWhy     string  // why not, when they do not
	freshProc      bool
	key            string
	warning        string
}

// Warning is a warning about the mode, shown once ("" for none).
func (h *helper) Warning() string { return h.warning }

func (h *helper) Key() string { return h.key }

func (h *helper) probed() (freshProc bool, overlayWhy string) { return h.freshProc, h.overlayWhy }

func (h *helper) overlayNote() string {
	if h.self.Features().Mounts && !h.overlay {
		return "; no overlay: diffs by metadata walk"
	}
	return ""
}

// cloneFlags are the namespaces of a helper.
func (h *helper) cloneFlags(j *job) uintptr {
	f := h.self.Features()
	var fl uintptr
	if h.userns {
		fl |= syscall.CLONE_NEWUSER
	}
	if f.Mounts {
		fl |= syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
	}
	if f.PIDNamespace {
		fl |= syscall.CLONE_NEWPID
	}
	if j.Run != nil && (j.Run.Network == NetworkNone || j.Run.Network == NetworkPrivate) && f.NetworkNamespace {
		fl |= syscall.CLONE_NEWNET
	}
	return fl
}

// profileSeq numbers the helpers' profiles.
var profileSeq atomic.Int64

// exec runs one job in a helper process and returns its result. stdin,
// stdout and stderr are the helper's (nil: /dev/null, discarded). The
// helper and everything it started are killed when ctx is done.
func (h *helper) exec(ctx context.Context, j *job, stdin io.Reader, stdout, stderr io.Writer) (*result, error) {
	feat := h.self.Features()
	mode := h.self.Mode()
	h.fillJob(j, feat)
	reexec := h.userns && h.newIDMap
	spec, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	cmd := h.helperCmd(j, feat, reexec, stdin, stdout, stderr, specR, resW)
	if reexec {
		// The helper waits for its maps, then executes itself again.
		spec = append([]byte{'\n'}, spec...)
	}
	var stderrBuf bytes.Buffer
	if stderr == nil {
		cmd.Stderr = &stderrBuf
	}

	// Pdeathsig follows the thread that started the child: keep that
	// thread for the child's whole life.
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		waited <- cmd.Wait()
		runtime.UnlockOSThread()
	}()
	err = <-started
	specR.Close()
	resW.Close()
	if err != nil {
		specW.Close()
		resR.Close()
		return nil, fmt.Errorf("starting the %s sandbox: %w", mode, err)
	}
	kill := func() {
		if !feat.PIDNamespace {
			// The helper kills the step's tree and exits; SIGKILL if it
			// does not within seconds.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			time.AfterFunc(5*time.Second, func() { _ = cmd.Process.Kill() })
			return
		}
		_ = cmd.Process.Kill()
	}
	stop := context.AfterFunc(ctx, kill)
	defer stop()
	// abort ends a helper that has not been given its job.
	abort := func(err error) (*result, error) {
		kill()
		specW.Close()
		<-waited
		resR.Close()
		return nil, err
	}

	if reexec {
		if err := h.writeMaps(cmd.Process.Pid); err != nil {
			return abort(err)
		}
	}
	if j.Run != nil && os.Geteuid() == 0 && PidsLimit() > 0 {
		// Root's processes ignore RLIMIT_NPROC: a pids cgroup, joined
		// before the helper reads its job.
		cg, err := limitPids(cmd.Process.Pid, PidsLimit())
		if err != nil {
			return abort(err)
		}
		defer cg.remove()
	}
	if j.Run != nil && j.Run.Network == NetworkPrivate {
		// The namespace is connected before the helper reads its job.
		stopNet, err := startNetwork(ctx, cmd.Process.Pid, j.Run.HostLoopback)
		if err != nil {
			return abort(err)
		}
		defer stopNet()
	}
	_, werr := specW.Write(spec)
	specW.Close()
	resData, _ := io.ReadAll(resR)
	resR.Close()
	waitErr := <-waited
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var res result
	if len(resData) == 0 || json.Unmarshal(resData, &res) != nil {
		msg := strings.TrimSpace(stderrBuf.String())
		if werr != nil {
			msg += " " + werr.Error()
		}
		return nil, fmt.Errorf("the %s sandbox helper failed (%v) %s", mode, waitErr, msg)
	}
	if res.Err != "" {
		return &res, errors.New(res.Err)
	}
	return &res, nil
}

// fillJob sets what j's helper must know of the sandbox: its namespaces,
// its maps, chroot mode, and where a CPU profile goes (KILN_CPUPROFILE).
func (h *helper) fillJob(j *job, feat Features) {
	j.Userns = h.userns
	j.SingleMap = h.singleMap
	j.Chroot = !feat.Mounts
	j.UserXattr = h.userns
	if p := os.Getenv("KILN_CPUPROFILE"); p != "" && j.Kind != jobProbe {
		j.Profile = fmt.Sprintf("%s.%s.%d", p, j.Kind, profileSeq.Add(1))
	}
}

// helperCmd is the command that starts j's helper: kiln itself as
// helperArg0, in the namespaces j needs, with stdin, stdout and stderr,
// and the job's pipes (specR, the job in; resW, the result out) as its
// descriptors 3 and 4.
func (h *helper) helperCmd(j *job, feat Features, reexec bool, stdin io.Reader, stdout, stderr io.Writer, specR, resW *os.File) *exec.Cmd {
	cmd := &exec.Cmd{
		Path: h.exe,
		Args: []string{helperArg0},
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		// The job travels on a pipe, never in the environment.
		Stdin:      stdin,
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{specR, resW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: h.cloneFlags(j),
			Pdeathsig:  syscall.SIGKILL,
		},
		// A process of the step that escaped the kill must not hold kiln
		// on its output pipes.
		WaitDelay: 2 * time.Second,
	}
	if !feat.PIDNamespace {
		// No pid namespace to take the step's tree down: the helper does
		// it when told (SIGTERM), also when kiln dies.
		cmd.SysProcAttr.Setpgid = true
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
	if reexec {
		// The helper waits for its maps (stage1), then executes itself
		// again.
		cmd.Args = append(cmd.Args, "stage1")
	}
	if h.userns && !h.newIDMap {
		cmd.SysProcAttr.UidMappings = sysMaps(h.uidMap)
		cmd.SysProcAttr.GidMappings = sysMaps(h.gidMap)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = !h.singleMap
	}
	return cmd
}

func sysMaps(m []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

// writeMaps writes the helper's id maps with newuidmap and newgidmap, both
// at once (each writes its own map; starting a set-id program costs tens
// of milliseconds, and every helper needs both).
func (h *helper) writeMaps(pid int) error {
	maps := []struct {
		prog string
		maps []IDMap
	}{{"newuidmap", h.uidMap}, {"newgidmap", h.gidMap}}
	errs := make([]error, len(maps))
	var wg sync.WaitGroup
	for i, m := range maps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := lookHelper(m.prog)
			args := append([]string{fmt.Sprint(pid)}, mapArgs(m.maps)...)
			out, err := exec.Command(path, args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("%s %s: %v: %s", m.prog, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func lookHelper(prog string) string {
	for _, d := range []string{"/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	return prog
}

// Unpack implements rootfs.Unpacker: the tar r is applied as the upper
// directory dest of an overlay of lowers, inside the sandbox so that
// owners are kept.
func (s *Sandbox) Unpack(ctx context.Context, lowers []string, dest, work string, r io.Reader) ([]string, error) {
	o, ok := s.impl.(OverlayImpl)
	if !ok || !s.Overlay() {
		return nil, fmt.Errorf("%w: %s mode has no overlay", ErrUnavailable, s.Mode())
	}
	return o.Unpack(ctx, lowers, dest, work, r)
}

// Apply extracts the tar r onto the directory dir (a working copy).
func (s *Sandbox) Apply(ctx context.Context, dir string, r io.Reader) ([]string, error) {
	return s.impl.Apply(ctx, dir, r)
}

// Remove implements rootfs.Unpacker.
func (s *Sandbox) Remove(ctx context.Context, dir string) error {
	return s.impl.Remove(ctx, dir)
}

// UpperDiff writes the overlay upper directory upper as an uncompressed
// OCI layer tar to w (see rootfs.WriteUpperDiff), in archive.TarWriter's
// normal form (no Timestamp): archive.CopyLayer takes it as it is.
func (s *Sandbox) UpperDiff(ctx context.Context, upper string, exclude []string, w io.Writer) (rootfs.DiffStats, error) {
	o, ok := s.impl.(OverlayImpl)
	if !ok || !s.Overlay() {
		return rootfs.DiffStats{}, fmt.Errorf("%w: %s mode has no overlay", ErrUnavailable, s.Mode())
	}
	return o.UpperDiff(ctx, upper, exclude, w)
}

// WalkDiff compares the working copy dir with the snapshot in file snapIn
// and writes the changes as an uncompressed layer tar to w, and the new
// snapshot to snapOut. Without w only the snapshot is taken.
//
// The mount points a step made in the working copy (StepResult.Created)
// are removed first when given as created.
func (s *Sandbox) WalkDiff(ctx context.Context, dir, snapIn, snapOut string, exclude, created []string, w io.Writer) (rootfs.DiffStats, error) {
	return s.impl.WalkDiff(ctx, dir, snapIn, snapOut, exclude, created, w)
}

func (h *helper) Unpack(ctx context.Context, lowers []string, dest, work string, r io.Reader) ([]string, error) {
	pr, wait, err := feedPipe(r)
	if err != nil {
		return nil, err
	}
	res, err := h.exec(ctx, &job{Kind: jobUnpack, Lowers: lowers, Dest: dest, Work: work, Chown: !h.singleMap}, pr, nil, nil)
	if ferr := wait(err != nil); ferr != nil {
		// The layer could not be read (or did not match its digest):
		// that explains a helper's truncated tar better.
		return nil, ferr
	}
	if err != nil {
		return nil, err
	}
	return res.Notes, nil
}

// feedPipe copies r into a pipe for a helper's standard input, in writes
// of up to 1 MiB into a pipe of 1 MiB where the kernel allows it (exec's
// own copy writes 32 KiB at a time into the default 64 KiB: a gigabyte
// layer was 32,000 writes and as many wake-ups of the helper). Once the
// helper is gone, wait closes the read end and returns what went wrong
// reading r (nil for a helper that stopped reading). After a failed
// helper it waits at most 2 s for a read of r that may block (as exec's
// WaitDelay did): the caller then only closes r.
func feedPipe(r io.Reader) (*os.File, func(failed bool) error, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if rc, err := pw.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
	done := make(chan error, 1)
	go func() {
		// Plain Read and Write: *os.File's ReadFrom would copy 32 KiB
		// at a time again.
		_, err := io.CopyBuffer(struct{ io.Writer }{pw}, struct{ io.Reader }{r}, make([]byte, 1<<20))
		pw.Close()
		done <- err
	}()
	wait := func(failed bool) error {
		pr.Close()
		var err error
		if failed {
			select {
			case err = <-done:
			case <-time.After(2 * time.Second):
			}
		} else {
			err = <-done
		}
		if err == nil || errors.Is(err, syscall.EPIPE) {
			return nil
		}
		return err
	}
	return pr, wait, nil
}

func (h *helper) Apply(ctx context.Context, dir string, r io.Reader) ([]string, error) {
	res, err := h.exec(ctx, &job{Kind: jobApply, Dir: dir, Chown: !h.singleMap}, r, nil, nil)
	if err != nil {
		return nil, err
	}
	return res.Notes, nil
}

func (h *helper) Remove(ctx context.Context, dir string) error {
	_, err := h.exec(ctx, &job{Kind: jobRemove, Paths: []string{dir}}, nil, nil, nil)
	return err
}

func (h *helper) UpperDiff(ctx context.Context, upper string, exclude []string, w io.Writer) (rootfs.DiffStats, error) {
	res, err := h.exec(ctx, &job{Kind: jobDiff, Dest: upper, Exclude: exclude}, nil, w, nil)
	if err != nil {
		return rootfs.DiffStats{}, err
	}
	return res.Stats, nil
}

func (h *helper) WalkDiff(ctx context.Context, dir, snapIn, snapOut string, exclude, created []string, w io.Writer) (rootfs.DiffStats, error) {
	res, err := h.exec(ctx, &job{Kind: jobWalk, Dir: dir, SnapIn: snapIn, SnapOut: snapOut, Exclude: exclude, Paths: created}, nil, w, nil)
	if err != nil {
		return rootfs.DiffStats{}, err
	}
	return res.Stats, nil
}

// The built-in modes: one type each, sharing the helper engine.
type (
	usernsMode struct{ helper }
	rootMode   struct{ helper }
	chrootMode struct{ helper }
)

func (*usernsMode) Mode() Mode { return ModeUserns }
func (m *usernsMode) Features() Features {
	o := OwnersKept
	if m.singleMap {
		o = OwnersCollapsed
	}
	return Features{Overlay: m.overlay, Mounts: true, PIDNamespace: true, NetworkNamespace: true, Ownership: o}
}

func (*rootMode) Mode() Mode { return ModeRoot }
func (m *rootMode) Features() Features {
	return Features{Overlay: m.overlay, Mounts: true, PIDNamespace: true, NetworkNamespace: true, Ownership: OwnersKept}
}

func (*chrootMode) Mode() Mode { return ModeChroot }
func (*chrootMode) Features() Features {
	return Features{Ownership: OwnersKept}
}

func newUsernsMode(h helper) *usernsMode { m := &usernsMode{h}; m.self = m; return m }
func newRootMode(h helper) *rootMode     { m := &rootMode{h}; m.self = m; return m }
func newChrootMode(h helper) *chrootMode { m := &chrootMode{h}; m.self = m; return m }

var (
	_ OverlayImpl     = (*usernsMode)(nil)
	_ OverlayImpl     = (*rootMode)(nil)
	_ Impl            = (*chrootMode)(nil)
	_ Impl            = noneMode{}
	_ rootfs.Unpacker = (*Sandbox)(nil)
)

// writeTar is used by the helper: a tar stream on w.
func writeTar(w io.Writer, fill func(tw *tar.Writer) error) error {
	// Headers, contents and paddings are small writes: batch them.
	bw := bufio.NewWriterSize(w, 256<<10)
	tw := tar.NewWriter(bw)
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
