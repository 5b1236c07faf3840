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
	"syscall"

	"github.com/kiln-build/kiln/pkg/rootfs"
)

// Mode is an isolation mode.
type Mode string

// The isolation modes, best first.
const (
	ModeUserns Mode = "userns"
	ModeRoot   Mode = "root"
	ModeChroot Mode = "chroot"
	ModeNone   Mode = "none"
)

// ParseMode parses --isolation: a mode, or "auto" / "" for the best the
// environment allows.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return "", nil
	case "userns", "rootless":
		return ModeUserns, nil
	case "root":
		return ModeRoot, nil
	case "chroot":
		return ModeChroot, nil
	case "none":
		return ModeNone, nil
	}
	return "", fmt.Errorf("--isolation %q: want auto, userns, root, chroot or none", s)
}

// Sandbox runs steps in one isolation mode. It is safe for concurrent use.
type Sandbox struct {
	mode   Mode
	reason string
	exe    string

	uidMap, gidMap []IDMap // userns: host maps
	newIDMap       bool    // write them with newuidmap/newgidmap
	singleMap      bool    // only the caller is mapped
	overlay        bool    // overlay mounts work in this mode
	overlayWhy     string  // why not, when they do not
	freshProc      bool
	key            string

	warnOnce sync.Once
	warning  string
}

// Mode is the sandbox's isolation mode.
func (s *Sandbox) Mode() Mode { return s.mode }

// Reason says why this mode was chosen.
func (s *Sandbox) Reason() string { return s.reason }

// Overlay reports whether steps run on overlay mounts (else on a working
// copy diffed by a metadata walk).
func (s *Sandbox) Overlay() bool { return s.overlay }

// SingleMapping reports whether only the caller is mapped (files of other
// owners collapse to root).
func (s *Sandbox) SingleMapping() bool { return s.singleMap }

// Key names the id mapping for the rootfs store.
func (s *Sandbox) Key() string { return s.key }

// Warning returns, once, a warning about this mode ("" after the first
// call or when there is none).
func (s *Sandbox) Warning() string {
	var w string
	s.warnOnce.Do(func() { w = s.warning })
	return w
}

// Summary is the mode in one line, as `kiln build` prints it.
func (s *Sandbox) Summary() string {
	line := fmt.Sprintf("isolation: %s (%s)", s.mode, s.reason)
	if s.mode != ModeNone && s.mode != ModeChroot && !s.overlay {
		line += "; no overlay: diffs by metadata walk"
	}
	return line
}

// cloneFlags are the namespaces of a helper.
func (s *Sandbox) cloneFlags(j *job) uintptr {
	var f uintptr
	switch s.mode {
	case ModeUserns:
		f = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
	case ModeRoot:
		f = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
	}
	if j.Run != nil && j.Run.Network == "none" && f != 0 {
		f |= syscall.CLONE_NEWNET
	}
	return f
}

// ErrUnavailable is returned by jobs when the mode cannot run them.
var ErrUnavailable = errors.New("sandbox unavailable")

// exec runs one job in a helper process and returns its result. stdin,
// stdout and stderr are the helper's (nil: /dev/null, discarded). The
// helper and everything it started are killed when ctx is done.
func (s *Sandbox) exec(ctx context.Context, j *job, stdin io.Reader, stdout, stderr io.Writer) (*result, error) {
	if s.mode == ModeNone {
		return nil, ErrUnavailable
	}
	j.Userns = s.mode == ModeUserns
	j.SingleMap = s.singleMap
	j.Chroot = s.mode == ModeChroot
	j.UserXattr = s.mode == ModeUserns
	j.Reexec = s.mode == ModeUserns && s.newIDMap
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
	cmd := &exec.Cmd{
		Path:       s.exe,
		Args:       []string{helperArg0},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Stdin:      stdin,
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{specR, resW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: s.cloneFlags(j),
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if s.mode == ModeChroot {
		cmd.SysProcAttr.Setpgid = true
	}
	if s.mode == ModeUserns && !s.newIDMap {
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
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
		return nil, fmt.Errorf("starting the %s sandbox: %w", s.mode, err)
	}
	kill := func() {
		if s.mode == ModeChroot {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
	}
	stop := context.AfterFunc(ctx, kill)
	defer stop()

	if j.Reexec {
		if err := s.writeMaps(cmd.Process.Pid); err != nil {
			kill()
			specW.Close()
			<-waited
			resR.Close()
			return nil, err
		}
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
		return nil, fmt.Errorf("the %s sandbox helper failed (%v) %s", s.mode, waitErr, msg)
	}
	if res.Err != "" {
		return &res, errors.New(res.Err)
	}
	return &res, nil
}

// writeMaps writes the helper's id maps with newuidmap and newgidmap.
func (s *Sandbox) writeMaps(pid int) error {
	for _, m := range []struct {
		prog string
		maps []IDMap
	}{{"newuidmap", s.uidMap}, {"newgidmap", s.gidMap}} {
		path := lookHelper(m.prog)
		args := append([]string{fmt.Sprint(pid)}, mapArgs(m.maps)...)
		out, err := exec.Command(path, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", m.prog, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
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
	res, err := s.exec(ctx, &job{Kind: "unpack", Lowers: lowers, Dest: dest, Work: work, Chown: !s.singleMap}, r, nil, nil)
	if err != nil {
		return nil, err
	}
	return res.Notes, nil
}

// Apply extracts the tar r onto the directory dir (a working copy).
func (s *Sandbox) Apply(ctx context.Context, dir string, r io.Reader) ([]string, error) {
	res, err := s.exec(ctx, &job{Kind: "apply", Dir: dir, Chown: !s.singleMap}, r, nil, nil)
	if err != nil {
		return nil, err
	}
	return res.Notes, nil
}

// Remove implements rootfs.Unpacker.
func (s *Sandbox) Remove(ctx context.Context, dir string) error {
	if s.mode == ModeNone {
		return os.RemoveAll(dir)
	}
	_, err := s.exec(ctx, &job{Kind: "remove", Paths: []string{dir}}, nil, nil, nil)
	return err
}

// UpperDiff writes the overlay upper directory upper as an uncompressed
// OCI layer tar to w (see rootfs.WriteUpperDiff).
func (s *Sandbox) UpperDiff(ctx context.Context, upper string, exclude []string, w io.Writer) (rootfs.DiffStats, error) {
	res, err := s.exec(ctx, &job{Kind: "diff", Dest: upper, Exclude: exclude}, nil, w, nil)
	if err != nil {
		return rootfs.DiffStats{}, err
	}
	return res.Stats, nil
}

// WalkDiff compares the working copy dir with the snapshot in file snapIn
// and writes the changes as an uncompressed layer tar to w, and the new
// snapshot to snapOut. Without w only the snapshot is taken.
//
// The mount points a step made in the working copy (StepResult.Created)
// are removed first when given as created.
func (s *Sandbox) WalkDiff(ctx context.Context, dir, snapIn, snapOut string, exclude, created []string, w io.Writer) (rootfs.DiffStats, error) {
	res, err := s.exec(ctx, &job{Kind: "walk", Dir: dir, SnapIn: snapIn, SnapOut: snapOut, Exclude: exclude, Paths: created}, nil, w, nil)
	if err != nil {
		return rootfs.DiffStats{}, err
	}
	return res.Stats, nil
}

var _ rootfs.Unpacker = (*Sandbox)(nil)

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
