package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kiln-build/kiln/pkg/ptrace"
	"github.com/kiln-build/kiln/pkg/rootfs"
)

// ModePtrace traces the step's processes (package ptrace): the last
// resort, for a non-root user without user namespaces (Pod Security
// Standards "restricted").
const ModePtrace Mode = "ptrace"

func init() {
	Register(Candidate{Mode: ModePtrace, Order: 900, Try: tryPtrace})
}

func tryPtrace(ctx context.Context, env *Env, rep *Report) (Impl, string, error) {
	if err := ptraceRefused(env); err != nil {
		rep.add("ptrace", false, err.Error(), "as root, use root, userns or chroot mode")
		return nil, "", err
	}
	if err := ptrace.Probe(ctx, env.Exe); err != nil {
		rep.add("ptrace", false, "tracing a child process: "+err.Error(),
			"Kubernetes: the RuntimeDefault seccomp profile allows ptrace of one's own children (kernel 4.8+); a Localhost profile must allow ptrace, process_vm_readv and process_vm_writev")
		return nil, "", err
	}
	rep.add("ptrace", true, "a child can be traced under a seccomp filter of its own"+ptraceArchNote(), "")
	return &ptraceMode{exe: env.Exe},
		"the last resort, slower: no user namespace, root or chroot works here, so RUN steps are traced with ptrace (paths translated into a working copy, root emulated, owners recorded), diffs by metadata walk" + ptraceArchNote(), nil
}

// ptraceArchNote says, on arm64, that the tracer there is untested on
// real hardware: its register and system call tables are built and
// unit-tested by cross-compiling only.
func ptraceArchNote() string {
	if runtime.GOARCH == "arm64" {
		return " (arm64: the tracer's arm64 port is only cross-compiled and unit-tested under emulation, never run on arm64 hardware; report failures)"
	}
	return ""
}

// ptraceMode runs steps under package ptrace's tracer on working copies
// whose owners live in an ownership table.
type ptraceMode struct{ exe string }

func (m *ptraceMode) Mode() Mode { return ModePtrace }

func (m *ptraceMode) Features() Features {
	return Features{Ownership: OwnersRecorded}
}

func (m *ptraceMode) Key() string { return "ptrace" }

func (m *ptraceMode) Apply(_ context.Context, dir string, r io.Reader) ([]string, error) {
	if err := checkTarget(dir); err != nil {
		return nil, err
	}
	notes, err := ptrace.ApplyLayer(dir, r)
	var out []string
	for _, n := range notes {
		out = appendNote(out, n)
	}
	return out, err
}

func (m *ptraceMode) WalkDiff(_ context.Context, dir, snapIn, snapOut string, exclude, _ []string, w io.Writer) (rootfs.DiffStats, error) {
	if w == nil {
		snapIn = ""
	}
	return ptrace.WalkDiff(dir, snapIn, snapOut, exclude, w)
}

func (m *ptraceMode) Remove(_ context.Context, dir string) error { return ptrace.RemoveAll(dir) }

// Run runs the step traced in its working copy. RUN --mount files
// (secrets, heredoc scripts, the ssh agent's socket), caches and tmpfs
// are guest paths the tracer serves from host paths; a read-only bind of
// the build context too. Writable binds need a mount namespace.
func (m *ptraceMode) Run(ctx context.Context, st Step) (*StepResult, error) {
	u, err := resolveUserIn(st.Dir, st.User)
	if err != nil {
		return nil, err
	}
	env := st.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+u.home)
	}
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	var binds []ptrace.Bind
	// Copies of the host's resolver files: the step may write to them,
	// and the working copy's own stay as they are.
	if len(st.Extras.Ulimits) > 0 {
		return nil, fmt.Errorf("--ulimit: ptrace mode cannot set a step's resource limits")
	}
	hosts, err := writeHosts(st.TempDir, st.Extras.Hosts, NetworkHost)
	if err != nil {
		return nil, err
	}
	if hosts != "" {
		binds = append(binds, ptrace.Bind{Guest: "/etc/hosts", Host: hosts})
	}
	for _, f := range []string{"/etc/resolv.conf"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		p := filepath.Join(st.TempDir, path.Base(f))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		binds = append(binds, ptrace.Bind{Guest: f, Host: p})
	}
	for i, mt := range st.Mounts {
		b := ptrace.Bind{Guest: mt.Target, Host: mt.Source, ReadOnly: mt.ReadOnly}
		switch {
		case mt.Type == MountTmpfs:
			b.Host = filepath.Join(st.TempDir, fmt.Sprintf("tmpfs%d", i))
			if err := os.MkdirAll(b.Host, 0o1777); err != nil {
				return nil, err
			}
		case mt.Type == MountCache:
		case mt.Type == MountBind && len(mt.Lowers) == 0 && (mt.ReadOnly || mt.File):
		default:
			return nil, fmt.Errorf("RUN --mount=type=%s,target=%s (writable, or from another stage or image) needs a mount namespace, which ptrace mode cannot make; read-only binds of the context, caches, tmpfs, secrets and ssh work here", mountKind(mt), mt.Target)
		}
		binds = append(binds, b)
	}
	cfg := ptrace.Config{
		Root: st.Dir, Binds: binds, Args: st.Args, Env: env, Cwd: st.Cwd,
		UID: u.uid, GID: u.gid, Groups: u.groups, Table: ptrace.TableFile(st.Dir),
	}
	// The disk quota is watched from here: the working copy's files are
	// this user's.
	stopDisk := func() *DiskError { return nil }
	runCtx := ctx
	if spec := stepDisk(st.Dir, true); spec != nil {
		w, err := openDiskWatch(spec, true)
		if err != nil {
			return nil, err
		}
		defer w.close()
		cfg.FileSizeLimit = spec.Limit
		var cancel context.CancelFunc
		runCtx, cancel = context.WithCancel(ctx)
		defer cancel()
		stopDisk = w.start(cancel)
	}
	res, err := ptrace.Run(runCtx, cfg, ptrace.Options{Exe: m.exe, Stdout: st.Stdout, Stderr: st.Stderr})
	if derr := stopDisk(); derr != nil && ctx.Err() == nil {
		return nil, derr
	}
	if err != nil {
		return nil, err
	}
	return &StepResult{ExitCode: res.Exit, Signal: res.Signal, Command: time.Duration(res.Command)}, nil
}
