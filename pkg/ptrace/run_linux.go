//go:build linux && amd64

package ptrace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tracerArg0 is argv[0] of the re-executed tracer process.
const tracerArg0 = "kiln-ptrace"

func init() {
	if len(os.Args) == 0 {
		return
	}
	switch os.Args[0] {
	case stubArg0:
		os.Exit(stubMain())
	case tracerArg0:
		os.Exit(tracerMain())
	}
}

// Run runs cfg's command traced and returns how it ended. The command and
// everything it started are gone when Run returns, also when ctx is done.
func Run(ctx context.Context, cfg Config, opts Options) (*Result, error) {
	exe := opts.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	if !cfg.Probe {
		root, err := filepath.EvalSymlinks(cfg.Root)
		if err != nil {
			return nil, err
		}
		cfg.Root = root
	}
	spec, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		specW.Close()
		return nil, err
	}
	defer resR.Close()
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        []string{tracerArg0},
		Env:         cfg.Env,
		Stdin:       opts.Stdin,
		Stdout:      opts.Stdout,
		Stderr:      opts.Stderr,
		ExtraFiles:  []*os.File{specR, resW},
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
		Cancel:      nil,
	}
	// Pdeathsig follows the thread that started the tracer.
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			waited <- cmd.Wait()
		}
	}()
	err = <-started
	resW.Close()
	specR.Close()
	if err != nil {
		specW.Close()
		return nil, fmt.Errorf("starting the ptrace tracer: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	_, werr := specW.Write(spec)
	specW.Close()
	data, _ := io.ReadAll(resR)
	waitErr := <-waited
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var res Result
	if len(data) == 0 || json.Unmarshal(data, &res) != nil {
		if werr != nil {
			return nil, fmt.Errorf("the ptrace tracer failed: %v (%v)", waitErr, werr)
		}
		return nil, fmt.Errorf("the ptrace tracer failed: %v", waitErr)
	}
	if res.Err != "" {
		return &res, errors.New(res.Err)
	}
	return &res, nil
}

// tracerMain is the tracer process: it reads its Config on fd 3 and
// reports the Result on fd 4.
func tracerMain() int {
	runtime.LockOSThread()
	resFile := os.NewFile(4, "result")
	report := func(r *Result) int {
		_ = json.NewEncoder(resFile).Encode(r)
		return 0
	}
	data, err := io.ReadAll(os.NewFile(3, "spec"))
	if err != nil {
		return report(&Result{Err: "reading the job: " + err.Error()})
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return report(&Result{Err: "reading the job: " + err.Error()})
	}
	res, err := trace(&cfg)
	if res == nil {
		res = &Result{}
	}
	if err != nil {
		res.Err = err.Error()
	}
	return report(res)
}

// defaultBinds are the host's in every root.
var defaultBinds = []Bind{{Guest: "/proc", Host: "/proc"}, {Guest: "/dev", Host: "/dev"}, {Guest: "/sys", Host: "/sys"}}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// trace runs the command under the tracer (in the tracer process, on its
// locked thread).
func trace(cfg *Config) (*Result, error) {
	if cfg.Probe {
		return probe()
	}
	table, err := LoadTable(cfg.Table)
	if err != nil {
		return nil, err
	}
	view := newView(cfg.Root, append(append([]Bind{}, defaultBinds...), cfg.Binds...))
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	hostCwd, _, err := view.resolve(path.Clean("/"+cwd), true)
	if err != nil {
		return nil, fmt.Errorf("working directory %s: %w", cwd, err)
	}
	if err := os.MkdirAll(hostCwd, 0o755); err != nil {
		return nil, fmt.Errorf("working directory %s: %w", cwd, err)
	}
	prog, err := lookPath(view, cfg.Args[0], cfg.Env)
	if err != nil {
		return &Result{Exit: 127}, err
	}
	cr := &cred{ruid: cfg.UID, euid: cfg.UID, suid: cfg.UID, fsuid: cfg.UID,
		rgid: cfg.GID, egid: cfg.GID, sgid: cfg.GID, fsgid: cfg.GID, groups: cfg.Groups}
	tr := &tracer{view: view, table: table, threads: map[int]*thread{}}
	res, err := tr.start(append([]string{stubArg0, prog}, cfg.Args...), hostCwd, cfg.Env, cr)
	if err != nil {
		return res, err
	}
	if err := table.Save(cfg.Table); err != nil {
		return res, fmt.Errorf("saving the ownership table: %w", err)
	}
	return res, nil
}

// lookPath finds the program as the guest's PATH would.
func lookPath(v *fsView, name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	p := defaultPath
	for _, kv := range env {
		if val, ok := strings.CutPrefix(kv, "PATH="); ok {
			p = val
		}
	}
	for _, dir := range filepath.SplitList(p) {
		if dir == "" {
			dir = "."
		}
		g := path.Join("/", dir, name)
		host, _, err := v.resolve(g, true)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(host, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return g, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// probeUID is the uid a probe's stub must see (emulated).
const probeUID = 4242

// probe checks that a child can be seized and its filter installed, and
// that the tracer answers its getuid.
func probe() (*Result, error) {
	tr := &tracer{view: newView("/nonexistent", nil), table: NewTable(), threads: map[int]*thread{}}
	cr := &cred{ruid: probeUID, euid: probeUID, suid: probeUID, fsuid: probeUID}
	res, err := tr.start([]string{stubArg0}, "/", []string{}, cr)
	if err == nil && res.Exit != 0 {
		err = fmt.Errorf("the traced probe exited with %d (its getuid was not answered by the tracer)", res.Exit)
	}
	return res, err
}

// start starts the stub with argv, seizes it, and traces it and its
// descendants until they are all gone.
func (tr *tracer) start(argv []string, dir string, env []string, cr *cred) (*Result, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	proc, err := os.StartProcess("/proc/self/exe", argv, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, readyR},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true},
	})
	readyR.Close()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("starting the command: %w", err)
	}
	pid := proc.Pid
	if _, _, errno := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, ptraceOptions, 0, 0); errno != 0 {
		_ = proc.Kill()
		readyW.Close()
		_, _ = proc.Wait()
		return nil, fmt.Errorf("ptrace is not permitted here: %w", errno)
	}
	tr.mainPid = pid
	tr.threads[pid] = &thread{tid: pid, cred: cr, known: true}
	start := time.Now()
	readyW.Close()
	ws, err := tr.loop()
	res := &Result{Command: time.Since(start), Stops: tr.stops}
	if err != nil {
		return res, err
	}
	switch {
	case ws.Exited():
		res.Exit = ws.ExitStatus()
	case ws.Signaled():
		res.Exit = 128 + int(ws.Signal())
		res.Signal = ws.Signal().String()
	}
	return res, nil
}

// Probe checks that tracing works here (ptrace of a child, a seccomp
// filter with no_new_privs): it runs exe (default /proc/self/exe) as the
// tracer of a stub that asks for its uid.
func Probe(ctx context.Context, exe string) error {
	_, err := Run(ctx, Config{Probe: true}, Options{Exe: exe})
	return err
}
