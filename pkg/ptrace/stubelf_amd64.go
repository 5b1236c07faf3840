//go:build linux && amd64

package ptrace

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stubCode is the machine code of the small stub (as below, assembled
// with GNU as; fprog and fprog2 follow at offsets 0xa0 and 0xb0):
//
//	mov rbx, rsp                  ; the initial stack: argc, argv, envp
//	read(3, rsp-16, 1)            ; wait until the tracer has seized us
//	close_range(3, ~0, 0)         ; nothing but stdin, stdout, stderr
//	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); on error exit_group(127)
//	seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog); on error exit_group(127)
//	seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog2); on error exit_group(127)
//	execve(argv[1], &argv[2], envp)
//	exit_group(127)
//
// It does what stubMain does without starting a Go runtime (and kiln's
// package initialisation): a RUN step starts in a millisecond instead of
// tens. fprog is the step's filter (package confine), fprog2 the
// tracer's. It cannot drop capabilities: it is used only by a process
// that has none (as in the pods ptrace mode is for).
var stubCode = []byte{
	0x48, 0x89, 0xe3, 0x31, 0xc0, 0xbf, 0x03, 0x00, 0x00, 0x00, 0x48, 0x8d,
	0x74, 0x24, 0xf0, 0xba, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0xb4,
	0x01, 0x00, 0x00, 0xbf, 0x03, 0x00, 0x00, 0x00, 0xbe, 0xff, 0xff, 0xff,
	0xff, 0x31, 0xd2, 0x0f, 0x05, 0xb8, 0x9d, 0x00, 0x00, 0x00, 0xbf, 0x26,
	0x00, 0x00, 0x00, 0xbe, 0x01, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x45, 0x31,
	0xd2, 0x45, 0x31, 0xc0, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x75, 0x4b, 0xb8,
	0x3d, 0x01, 0x00, 0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x31, 0xf6, 0x48,
	0x8d, 0x15, 0x46, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x75,
	0x31, 0xb8, 0x3d, 0x01, 0x00, 0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x31,
	0xf6, 0x48, 0x8d, 0x15, 0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85,
	0xc0, 0x75, 0x17, 0x48, 0x8b, 0x0b, 0x48, 0x8b, 0x7b, 0x10, 0x48, 0x8d,
	0x73, 0x18, 0x48, 0x8d, 0x54, 0xcb, 0x10, 0xb8, 0x3b, 0x00, 0x00, 0x00,
	0x0f, 0x05, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00,
	0x0f, 0x05, 0x66, 0x90,
}

// stubELF is a static ELF executable: the stub code and its two filters,
// in one read-execute segment at a fixed address.
func stubELF(step, trace []unix.SockFilter) []byte {
	const (
		base    = 0x400000
		codeOff = 128
	)
	fprogOff := codeOff + len(stubCode)
	filterOff := fprogOff + 32
	size := filterOff + 8*(len(step)+len(trace))
	b := make([]byte, size)
	le := binary.LittleEndian
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], base+codeOff) // entry
	le.PutUint64(b[32:], 64)           // phoff
	le.PutUint16(b[52:], 64)           // ehsize
	le.PutUint16(b[54:], 56)           // phentsize
	le.PutUint16(b[56:], 1)            // phnum
	ph := b[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], uint64(size))
	le.PutUint64(ph[40:], uint64(size))
	le.PutUint64(ph[48:], 0x1000)
	copy(b[codeOff:], stubCode)
	off := filterOff
	for i, prog := range [][]unix.SockFilter{step, trace} {
		le.PutUint16(b[fprogOff+16*i:], uint16(len(prog)))
		le.PutUint64(b[fprogOff+16*i+8:], base+uint64(off))
		for _, f := range prog {
			raw := (*[8]byte)(unsafe.Pointer(&f))
			copy(b[off:], raw[:])
			off += 8
		}
	}
	return b
}

var (
	stubOnce sync.Once
	stubMem  *os.File // the memfd, open for the process's life
	stubErr  error
)

// smallStub returns the path of the small stub: a sealed memory file
// (memfd) of this process, made once.
func smallStub() (string, error) {
	stubOnce.Do(func() {
		if capEff() != 0 {
			stubErr = fmt.Errorf("the small stub cannot drop capabilities")
			return
		}
		step, err := stepFilter.Program()
		if err != nil {
			stubErr = err
			return
		}
		fd, err := unix.MemfdCreate("kiln-ptrace-stub", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			stubErr = err
			return
		}
		f := os.NewFile(uintptr(fd), "kiln-ptrace-stub")
		if _, err := f.Write(stubELF(step, filterProg())); err != nil {
			f.Close()
			stubErr = err
			return
		}
		_, _ = unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
		stubMem = f
	})
	if stubErr != nil {
		return "", stubErr
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), stubMem.Fd()), nil
}

// capEff is this process's effective capability set.
func capEff() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ^uint64(0)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return ^uint64(0)
			}
			return n
		}
	}
	return ^uint64(0)
}
