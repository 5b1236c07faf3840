//go:build linux && (amd64 || arm64)

package ptrace

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/testutil"
)

// These tests need no tracing: they run on amd64 and, cross-compiled,
// under arm64 emulation (GOARCH=arm64 go test -c, run with
// qemu-aarch64-static), where tracing itself cannot run.

// TestRegs: the argument, number and result accessors of each
// architecture's register layout, and rewind.
func TestRegs(t *testing.T) {
	var r regs
	for i := 0; i < 6; i++ {
		setArg(&r, i, uint64(100+i))
	}
	for i := 0; i < 6; i++ {
		if got := arg(&r, i); got != uint64(100+i) {
			t.Errorf("arg %d = %d, want %d", i, got, 100+i)
		}
	}
	setSysno(&r, unix.SYS_OPENAT)
	if sysno(&r) != unix.SYS_OPENAT {
		t.Errorf("sysno = %d", sysno(&r))
	}
	setRet(&r, -int64(unix.ENOENT))
	if retval(&r) != -int64(unix.ENOENT) {
		t.Errorf("retval = %d", retval(&r))
	}
	if runtime.GOARCH == "arm64" && int64(arg(&r, 0)) != -int64(unix.ENOENT) {
		t.Errorf("arm64: the result is x0, the first argument's register")
	}
	setPC(&r, 0x1000)
	before := pc(&r)
	rewind(&r, unix.SYS_GETCWD)
	if rewound(&r) != unix.SYS_GETCWD || before-pc(&r) != uint64(insnSize) {
		t.Errorf("rewind: the next call %d, pc moved by %d, want %d", rewound(&r), before-pc(&r), insnSize)
	}
}

// TestFilter runs the tracer's seccomp program on sample calls: the
// traced calls stop, others run, another architecture's fail.
func TestFilter(t *testing.T) {
	prog := filterProg()
	seen := map[uint32]bool{}
	for _, nr := range traced {
		if seen[nr] {
			t.Errorf("call %d is traced twice", nr)
		}
		seen[nr] = true
		if got := runBPF(t, prog, auditArch, nr); got != unix.SECCOMP_RET_TRACE {
			t.Errorf("call %d: filter returns %#x, want RET_TRACE", nr, got)
		}
	}
	for _, nr := range []uint32{unix.SYS_READ, unix.SYS_WRITE, unix.SYS_MMAP, unix.SYS_CLOSE} {
		if got := runBPF(t, prog, auditArch, nr); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("call %d: filter returns %#x, want RET_ALLOW", nr, got)
		}
	}
	for _, nr := range []uint32{unix.SYS_OPENAT, unix.SYS_NEWFSTATAT, unix.SYS_EXECVE, unix.SYS_GETUID, unix.SYS_CONNECT} {
		if !seen[nr] {
			t.Errorf("call %d is not traced", nr)
		}
	}
	if got := runBPF(t, prog, auditArch^1, unix.SYS_READ); got != unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS) {
		t.Errorf("another architecture: %#x, want ENOSYS", got)
	}
	// The calls only amd64 has never collide with a real number on arm64.
	legacy := []int64{sysAccess, sysChmod, sysChown, sysCreat, sysFutimesat, sysLchown, sysLink, sysLstat, sysMkdir,
		sysMknod, sysOpen, sysReadlink, sysRename, sysRmdir, sysStat, sysSymlink, sysUnlink, sysUtime, sysUtimes}
	for _, n := range legacy {
		if runtime.GOARCH == "arm64" && (n >= 0 || seen[uint32(n)]) {
			t.Errorf("arm64: legacy call constant %d could match a call", n)
		}
		if runtime.GOARCH == "amd64" && !seen[uint32(n)] {
			t.Errorf("amd64: call %d is handled but not traced", n)
		}
	}
	slices.Sort(legacy)
	if len(slices.Compact(legacy)) != 19 {
		t.Errorf("legacy call constants collide")
	}
}

// runBPF evaluates a classic BPF seccomp program on seccomp_data for arch
// and nr (only the instructions filterProg uses).
func runBPF(t *testing.T, prog []unix.SockFilter, arch, nr uint32) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.NativeEndian.PutUint32(data[0:], nr)
	binary.NativeEndian.PutUint32(data[4:], arch)
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.NativeEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			if acc >= in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: code %#x not evaluated", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// TestArm64Emulated cross-compiles this package's tests for arm64 and
// runs TestRegs and TestFilter under qemu-aarch64-static: the arm64
// register layout and call table, checked without arm64 hardware
// (tracing itself cannot run under user-mode emulation).
func TestArm64Emulated(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the cross-compiled check runs from amd64")
	}
	testutil.SkipIfShort(t)
	const qemu = "/usr/bin/qemu-aarch64-static"
	testutil.RequireProgram(t, qemu, "qemu-user-static")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to cross-compile with")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "ptrace.arm64.test")
	build := exec.Command(goTool, "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOARCH=arm64 go test -c: %v\n%s", err, out)
	}
	out, err := exec.Command(qemu, bin, "-test.run", "^(TestRegs|TestFilter)$", "-test.v").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestRegs") || !strings.Contains(string(out), "--- PASS: TestFilter") {
		t.Fatalf("arm64 tests under %s: %v\n%s", qemu, err, out)
	}
}
