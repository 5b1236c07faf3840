package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Step is one command to run (a RUN step).
type Step struct {
	// Lowers are the layer directories of the root filesystem, bottom
	// first (overlay mode). The step's changes land in UpperDir(TempDir).
	Lowers []string
	// Dir, instead of Lowers, is a working copy the step runs in (and
	// changes).
	Dir string
	// TempDir is an empty directory for the step's upper, work and mount
	// point directories, on the layer directories' filesystem.
	TempDir string

	// Args is the command (argv); Args[0] is looked up in Env's PATH.
	Args []string
	// Env is the environment, KEY=VALUE.
	Env []string
	// User is "user[:group]" (names or ids, resolved in the step's
	// /etc/passwd and /etc/group); "" is root.
	User string
	// Cwd is the working directory (made when missing).
	Cwd string
	// Network is NetworkNone for a loopback-only network namespace,
	// NetworkHost for the host's, and "" or NetworkDefault for the best
	// the mode has: a namespace of its own with outbound access
	// (NetworkPrivate) where slirp4netns or pasta can make one, else the
	// host's (see DefaultNetwork).
	Network Network
	// Mounts are RUN --mount mounts.
	Mounts []Mount
	// Extras are --add-host, --ulimit and --shm-size (extras.go).
	Extras Extras
	// Stdout and Stderr receive the command's output.
	Stdout, Stderr io.Writer
}

// StepResult is how a step ended.
type StepResult struct {
	ExitCode int
	Signal   string
	// Command is the command's own wall time (from its start to its exit).
	Command time.Duration
	// Notes are things worth telling (a user that could not be mapped).
	Notes []string
	// Created are mount points made in a working copy, relative to its
	// root: leave them out of its diff.
	Created []string
}

// UpperDir is where a step run with TempDir leaves its changes (overlay
// mode).
func UpperDir(tempDir string) string { return filepath.Join(tempDir, "upper") }

// Run runs a step. A command that ran and failed is not an error: see
// StepResult.ExitCode. The command, its children and its mounts are gone
// when Run returns, also when ctx is cancelled.
func (s *Sandbox) Run(ctx context.Context, st Step) (*StepResult, error) {
	if s.Mode() == ModeNone {
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, s.reason)
	}
	if len(st.Args) == 0 {
		return nil, fmt.Errorf("no command")
	}
	f := s.Features()
	if st.Network == NetworkNone && !f.NetworkNamespace {
		return nil, fmt.Errorf("--network=none needs a network namespace, which %s mode cannot make (%s)", s.Mode(), s.reason)
	}
	if st.Extras.ShmSize > 0 && !f.Mounts {
		return nil, fmt.Errorf("--shm-size needs a mount namespace for /dev/shm, which %s mode cannot make (%s)", s.Mode(), s.reason)
	}
	if st.Dir == "" && !f.Overlay {
		return nil, fmt.Errorf("%s mode runs steps on a working copy", s.Mode())
	}
	return s.impl.Run(ctx, st)
}

// Run runs a step in a helper.
func (h *helper) Run(ctx context.Context, st Step) (*StepResult, error) {
	feat := h.self.Features()
	rs := &runSpec{
		Args: st.Args, Env: st.Env, User: st.User, Cwd: st.Cwd, Network: resolveNetwork(feat, st.Network),
		Mounts: st.Mounts, Ulimits: st.Extras.Ulimits, ShmSize: st.Extras.ShmSize,
	}
	if h.userns && os.Geteuid() != 0 {
		// In its own user namespace: RLIMIT_NPROC (as root, a cgroup:
		// see helper.exec).
		rs.PidsLimit = PidsLimit()
	}
	if st.Dir != "" {
		rs.Disk = stepDisk(st.Dir, true)
		if rs.Disk != nil && !feat.Mounts {
			// A chroot step's mounts are moved into its working copy.
			for _, m := range st.Mounts {
				rs.Disk.Skip = append(rs.Disk.Skip, m.Target)
			}
		}
	} else {
		rs.Disk = stepDisk(st.TempDir, false)
	}
	t := st.TempDir
	mk := func(name string) (string, error) {
		p := filepath.Join(t, name)
		return p, os.MkdirAll(p, 0o755)
	}
	var err error
	if st.Dir != "" {
		rs.Dir = st.Dir
		if !feat.Mounts && len(st.Mounts) > 0 {
			if rs.Scratch, err = mk("scratch"); err != nil {
				return nil, err
			}
		}
	} else {
		rs.Lowers = st.Lowers
		if rs.Upper, err = mk("upper"); err != nil {
			return nil, err
		}
		if rs.Work, err = mk("work"); err != nil {
			return nil, err
		}
		if rs.Target, err = mk("root"); err != nil {
			return nil, err
		}
		if rs.Scratch, err = mk("scratch"); err != nil {
			return nil, err
		}
	}
	// Copies of the host's resolver files: the step may write to them
	// without touching the host's, and they stay out of the layer.
	rs.HostLoopback = rs.Network == NetworkPrivate && wantsGateway(st.Extras.Hosts)
	if rs.Hosts, err = writeHosts(t, st.Extras.Hosts, rs.Network); err != nil {
		return nil, err
	}
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		if rs.Network == NetworkPrivate {
			data = privateResolv(data)
		}
		rs.Resolv = filepath.Join(t, "resolv.conf")
		if err := os.WriteFile(rs.Resolv, data, 0o644); err != nil {
			return nil, err
		}
	}
	for i := range rs.Mounts {
		m := &rs.Mounts[i]
		if m.Type == MountBind && !m.ReadOnly {
			if m.Upper, err = mk(fmt.Sprintf("mount%d/upper", i)); err != nil {
				return nil, err
			}
			if m.Work, err = mk(fmt.Sprintf("mount%d/work", i)); err != nil {
				return nil, err
			}
		}
		if m.Source != "" && len(m.Lowers) == 0 {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				m.File = true
			}
		}
		if len(m.Lowers) > 0 {
			m.File = fileInLowers(m.Lowers, m.Source)
		}
	}
	if !feat.Mounts {
		// Without a mount namespace: files are copied in, directories
		// moved in and out (see chrootMove), an agent socket relayed
		// (socketRelay); another stage's layers cannot be.
		for _, m := range rs.Mounts {
			if len(m.Lowers) > 0 || (m.Socket && rs.Dir == "") {
				what := "another stage's or image's files"
				if m.Socket {
					what = "an ssh agent's socket"
				}
				return nil, fmt.Errorf("RUN --mount=type=%s (target %s) needs a mount namespace for %s, which %s mode cannot make", mountKind(m), m.Target, what, h.self.Mode())
			}
		}
		var relays []*socketRelay
		if rs.Mounts, relays, err = relaySockets(rs.Dir, rs.Mounts); err != nil {
			return nil, err
		}
		defer closeRelays(relays)
	}
	res, err := h.exec(ctx, &job{Kind: jobRun, Run: rs}, nil, st.Stdout, st.Stderr)
	if err != nil {
		return nil, err
	}
	if res.Disk != nil {
		return nil, res.Disk
	}
	return &StepResult{ExitCode: res.Exit, Signal: res.Signal, Notes: res.Notes, Created: res.Created, Command: time.Duration(res.CmdNS)}, nil
}

// CommandString renders argv for messages, shell-quoted where needed.
func CommandString(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>*?()[]{}#~") {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

func mountKind(m Mount) string {
	if m.Socket {
		return "ssh"
	}
	return string(m.Type)
}

// fileInLowers reports whether p, a path in the union of layer
// directories (bottom first), is something other than a directory in the
// topmost layer that has it (a RUN --mount=type=bind,from=… of one file,
// whose mount point must then be a file). A whiteout (a 0/0 character
// device) or a path no layer has counts as not a file.
func fileInLowers(lowers []string, p string) bool {
	for i := len(lowers) - 1; i >= 0; i-- {
		fi, err := os.Lstat(filepath.Join(lowers[i], filepath.Clean("/"+p)))
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeCharDevice != 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				return false
			}
		}
		return !fi.IsDir()
	}
	return false
}
