//go:build linux && (amd64 || arm64)

package ptrace

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	if len(os.Args) > 0 && os.Args[0] == stubArg0 {
		os.Exit(stubMain())
	}
}

// Run runs cfg's command traced and returns how it ended. The command and
// everything it started are gone when Run returns, also when ctx is done.
//
// The tracer is a goroutine of the caller locked to its own OS thread: it
// waits only for that thread's children and tracees (__WNOTHREAD), so the
// caller's other children are never reaped by it.
func Run(ctx context.Context, cfg Config, opts Options) (*Result, error) {
	if opts.Exe == "" {
		opts.Exe = "/proc/self/exe"
	}
	if !cfg.Probe {
		root, err := filepath.EvalSymlinks(cfg.Root)
		if err != nil {
			return nil, err
		}
		cfg.Root = root
	}
	files, done, err := stdio(opts)
	if err != nil {
		return nil, err
	}
	tr := &tracer{threads: map[int]*thread{}}
	type outcome struct {
		res *Result
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, and with it
		// (PTRACE_O_EXITKILL) anything still traced.
		runtime.LockOSThread()
		res, err := tr.trace(&cfg, opts.Exe, files)
		ch <- outcome{res, err}
	}()
	stop := context.AfterFunc(ctx, tr.killAll)
	o := <-ch
	stop()
	done()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return o.res, o.err
}

// stdio returns the command's stdin, stdout and stderr as files (pipes
// copied to and from the writers that are not files) and a function that
// closes them and waits for the copies.
func stdio(opts Options) ([]*os.File, func(), error) {
	var closers []*os.File
	var copies sync.WaitGroup
	done := func() {
		for _, f := range closers {
			f.Close()
		}
		copies.Wait()
	}
	in, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, in)
	if f, ok := opts.Stdin.(*os.File); ok {
		in = f
	} else if opts.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			done()
			return nil, nil, err
		}
		closers = append(closers, r)
		in = r
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(w, opts.Stdin)
			w.Close()
		}()
	}
	files := []*os.File{in}
	var shared *os.File // one pipe when stdout and stderr are one writer
	for _, wr := range []io.Writer{opts.Stdout, opts.Stderr} {
		if f, ok := wr.(*os.File); ok {
			files = append(files, f)
			continue
		}
		if wr == nil {
			wr = io.Discard
		}
		if shared != nil && sameWriter(opts.Stdout, opts.Stderr) {
			files = append(files, shared)
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			done()
			return nil, nil, err
		}
		closers = append(closers, w)
		files = append(files, w)
		shared = w
		copies.Add(1)
		go func(wr io.Writer) {
			defer copies.Done()
			_, _ = io.Copy(wr, r)
			r.Close()
		}(wr)
	}
	return files, done, nil
}

// defaultBinds are the host's in every root.
var defaultBinds = []Bind{{Guest: "/proc", Host: "/proc"}, {Guest: "/dev", Host: "/dev"}, {Guest: "/sys", Host: "/sys"}}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// trace runs the command under the tracer (on the tracer's locked
// thread), with files as its stdin, stdout and stderr.
func (tr *tracer) trace(cfg *Config, exe string, files []*os.File) (*Result, error) {
	tr.exe, tr.files = exe, files
	if cfg.Probe {
		return tr.probe()
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
	tr.view, tr.table = view, table
	tr.fileSize = cfg.FileSizeLimit
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
func (tr *tracer) probe() (*Result, error) {
	tr.view, tr.table = newView("/nonexistent", nil), NewTable()
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
	exe := tr.exe
	if len(argv) > 1 {
		if p, err := smallStub(); err == nil {
			exe, tr.small = p, true
		}
	}
	attr := &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: append(append([]*os.File{}, tr.files...), readyR),
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true},
	}
	proc, err := os.StartProcess(exe, argv, attr)
	if err != nil && tr.small {
		// Executing a memfd may be refused (vm.memfd_noexec): kiln itself.
		tr.small = false
		proc, err = os.StartProcess(tr.exe, argv, attr)
	}
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
	if tr.fileSize > 0 {
		// Set before the stub executes the command (it waits for ready).
		lim := unix.Rlimit{Cur: uint64(tr.fileSize), Max: uint64(tr.fileSize)}
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
			_ = proc.Kill()
			readyW.Close()
			_, _ = proc.Wait()
			return nil, fmt.Errorf("the file size limit (RLIMIT_FSIZE %d): %w", tr.fileSize, err)
		}
		tr.fsize = true
	}
	tr.mainPid = pid
	tr.add(&thread{tid: pid, cred: cr, known: true})
	start := time.Now()
	var ts0 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts0)
	readyW.Close()
	ws, err := tr.loop()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	res := &Result{Command: time.Since(start), Stops: tr.stops, TraceeCPU: tr.cpu, TracerCPU: time.Duration(ts.Nano() - ts0.Nano())}
	if err != nil {
		return res, err
	}
	switch {
	case ws.Exited():
		res.Exit = ws.ExitStatus()
		if tr.small && !tr.execd && res.Exit == 127 {
			// The small stub cannot say why its execve failed.
			fmt.Fprintf(tr.files[2], "kiln: exec %s: no such file, or not executable\n", argv[2])
		}
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

// sameWriter reports whether a and b are the same writer (false for
// writers that cannot be compared).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
