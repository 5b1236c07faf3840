//go:build linux && (amd64 || arm64)

package ptrace

import (
	"bytes"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readMem reads len(buf) bytes of tid's memory at addr.
func readMem(tid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(tid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	return memFile(tid, addr, buf, false)
}

// writeMem writes data to tid's memory at addr.
func writeMem(tid int, addr uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &data[0], Len: uint64(len(data))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(data)}}
	n, err := unix.ProcessVMWritev(tid, local, remote, 0)
	if err == nil && n == len(data) {
		return nil
	}
	return memFile(tid, addr, data, true)
}

// memFile is the fallback through /proc/TID/mem (where process_vm_* are
// refused).
func memFile(tid int, addr uint64, buf []byte, write bool) error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", tid), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var n int
	if write {
		n, err = f.WriteAt(buf, int64(addr))
	} else {
		n, err = f.ReadAt(buf, int64(addr))
	}
	if err == nil && n != len(buf) {
		err = unix.EFAULT
	}
	return err
}

// readString reads a NUL-terminated string of at most max bytes.
func readString(tid int, addr uint64, max int) (string, error) {
	var out []byte
	for len(out) < max {
		// Up to the end of the page: the next one may be unmapped.
		n := int(4096 - addr%4096)
		chunk := make([]byte, n)
		if err := readMem(tid, addr, chunk); err != nil {
			return "", err
		}
		if i := bytes.IndexByte(chunk, 0); i >= 0 {
			return string(append(out, chunk[:i]...)), nil
		}
		out = append(out, chunk...)
		addr += uint64(n)
	}
	return "", unix.ENAMETOOLONG
}

func readU64(tid int, addr uint64) (uint64, error) {
	var b [8]byte
	err := readMem(tid, addr, b[:])
	return *(*uint64)(unsafe.Pointer(&b[0])), err
}
