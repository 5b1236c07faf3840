//go:build linux && (amd64 || arm64)

package ptrace

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// scratchSize is the mapping injected into each thread for rewritten
// arguments (paths, an execve argv).
const scratchSize = 256 << 10

const ptraceOptions = unix.PTRACE_O_TRACESECCOMP | unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK |
	unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_EXITKILL

// cred is a process's emulated identity.
type cred struct {
	ruid, euid, suid, fsuid uint32
	rgid, egid, sgid, fsgid uint32
	groups                  []uint32
}

func (c *cred) clone() *cred {
	n := *c
	n.groups = append([]uint32(nil), c.groups...)
	return &n
}

// thread is one traced thread.
type thread struct {
	tid     int
	cred    *cred
	exe     string // guest path of the program it runs
	newExe  string // of the execve in progress
	scratch uint64 // injected mapping, 0 before
	// post runs at the syscall-exit stop of the call being handled.
	post func(r *regs)
	// held: a new thread stopped before its parent's event told who it is.
	held bool
	// known: its parent's event was seen.
	known bool
}

// tracer is the state of one traced process tree. It runs on one locked
// OS thread.
type tracer struct {
	view    *fsView
	table   *Table
	threads map[int]*thread
	mainPid int
	status  unix.WaitStatus
	done    bool
	// stats
	stops int
	cpu   time.Duration // of the reaped tracees

	exe   string     // the stub's binary (kiln)
	small bool       // the small stub (stubELF) runs instead
	execd bool       // the main process executed the command
	files []*os.File // the command's stdin, stdout, stderr

	fileSize int64 // the command's RLIMIT_FSIZE (0: none)
	fsize    bool  // it is set: SIGXFSZ withheld (fsize_linux.go)

	mu     sync.Mutex // guards threads' membership for killAll
	killed bool
}

// add and del change the traced set (on the tracer's thread); killAll
// (from any goroutine) kills every traced thread.
func (tr *tracer) add(t *thread) {
	tr.mu.Lock()
	tr.threads[t.tid] = t
	killed := tr.killed
	tr.mu.Unlock()
	if killed {
		_ = unix.Kill(t.tid, unix.SIGKILL)
	}
}

func (tr *tracer) del(tid int) {
	tr.mu.Lock()
	delete(tr.threads, tid)
	tr.mu.Unlock()
}

func (tr *tracer) killAll() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.killed = true
	for tid := range tr.threads {
		_ = unix.Kill(tid, unix.SIGKILL)
	}
}

// loop waits for the tree's stops until every traced thread is gone and
// returns the main process's wait status.
func (tr *tracer) loop() (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		pid, err := unix.Wait4(-1, &ws, unix.WALL|unix.WNOTHREAD, &ru)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ECHILD {
			if !tr.done {
				return 0, fmt.Errorf("the traced process disappeared")
			}
			return tr.status, nil
		}
		if err != nil {
			return 0, err
		}
		tr.stops++
		if ws.Exited() || ws.Signaled() {
			tr.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		tr.event(pid, ws)
	}
}

func (tr *tracer) event(pid int, ws unix.WaitStatus) {
	t := tr.threads[pid]
	if ws.Exited() || ws.Signaled() {
		tr.del(pid)
		if pid == tr.mainPid {
			tr.status, tr.done = ws, true
			// A background process left by the step goes with it.
			tr.mu.Lock()
			for tid := range tr.threads {
				_ = unix.Kill(tid, unix.SIGKILL)
			}
			tr.mu.Unlock()
		}
		return
	}
	if !ws.Stopped() {
		return
	}
	if t == nil {
		t = &thread{tid: pid, cred: &cred{}}
		tr.add(t)
	}
	sig := ws.StopSignal()
	ev := int(uint32(ws)>>16) & 0xff
	switch {
	case sig == unix.SIGTRAP|0x80:
		tr.exit(t)
	case ev == unix.PTRACE_EVENT_SECCOMP:
		tr.entry(t)
	case ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK || ev == unix.PTRACE_EVENT_CLONE:
		msg, _ := unix.PtraceGetEventMsg(pid)
		tr.spawned(t, int(msg), ev != unix.PTRACE_EVENT_CLONE)
		resume(pid, 0)
	case ev == unix.PTRACE_EVENT_EXEC:
		if old, _ := unix.PtraceGetEventMsg(pid); int(old) != pid {
			if o := tr.threads[int(old)]; o != nil {
				tr.del(int(old))
				o.tid = pid
				t = o
				tr.add(t)
			}
		}
		t.scratch = 0
		t.post = nil
		if pid == tr.mainPid && t.newExe != "" {
			// The command's execve, which the tracer saw enter. The
			// stub's own exec may report here too: it can still be in
			// execve when the tracer seizes it (os.StartProcess returns
			// once close-on-exec files are closed, before the exec
			// event).
			tr.execd = true
		}
		if t.newExe != "" {
			t.exe, t.newExe = t.newExe, ""
		}
		resume(pid, 0)
	case ev == unix.PTRACE_EVENT_STOP:
		if !t.known && pid != tr.mainPid {
			t.held = true // resumed when its parent's event comes
			return
		}
		resume(pid, 0)
	case ev != 0:
		resume(pid, 0)
	case sig == unix.SIGXFSZ && tr.fsize && !catches(pid, unix.SIGXFSZ):
		// The write already failed with EFBIG: the signal's default
		// action (a core dump) is withheld, as if ignored.
		resume(pid, 0)
	default:
		// A signal for the thread: deliver it.
		resume(pid, int(sig))
	}
}

// spawned sets up a new thread or process from its parent's event.
func (tr *tracer) spawned(parent *thread, tid int, fork bool) {
	c := tr.threads[tid]
	if c == nil {
		c = &thread{tid: tid}
		tr.add(c)
	}
	c.cred = parent.cred.clone()
	c.exe = parent.exe
	if fork {
		// A copy of (or, for vfork, the suspended parent's) memory: the
		// parent's scratch mapping is there.
		c.scratch = parent.scratch
	}
	c.known = true
	if c.held {
		c.held = false
		resume(tid, 0)
	}
}

func resume(tid, sig int) {
	_ = unix.PtraceCont(tid, sig)
}

// exit handles a syscall-exit stop.
func (tr *tracer) exit(t *thread) {
	post := t.post
	t.post = nil
	if post != nil {
		var r regs
		if getRegs(t.tid, &r) == nil {
			post(&r)
		}
	}
	resume(t.tid, 0)
}

// inject makes t map its scratch area: the current call becomes mmap,
// and at its exit the thread is rewound to make its own call again.
func (tr *tracer) inject(t *thread, r *regs) {
	saved := *r
	setSysno(r, unix.SYS_MMAP)
	setArg(r, 0, 0)
	setArg(r, 1, scratchSize)
	setArg(r, 2, unix.PROT_READ|unix.PROT_WRITE)
	setArg(r, 3, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	setArg(r, 4, ^uint64(0))
	setArg(r, 5, 0)
	if err := setRegs(t.tid, r); err != nil {
		resume(t.tid, 0)
		return
	}
	t.post = func(r *regs) {
		if ret := retval(r); ret < 0 && ret > -4096 {
			// No scratch: fail the call rather than loop.
			setRet(&saved, ret)
			_ = setRegs(t.tid, &saved)
			return
		} else {
			t.scratch = uint64(ret)
		}
		rewind(&saved, sysno(&saved))
		_ = setRegs(t.tid, &saved)
	}
	_ = unix.PtraceSyscall(t.tid, 0)
}

// procLink reads a /proc/TID/... link of the thread.
func procLink(tid int, name string) (string, error) {
	return readlink("/proc/" + strconv.Itoa(tid) + "/" + name)
}

func fdPath(tid int, fd int) string {
	return "/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.Itoa(fd)
}
