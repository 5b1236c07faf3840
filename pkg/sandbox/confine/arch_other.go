//go:build linux && !amd64 && !arm64

package confine

const auditArch = 0

const x32ABI = 0

var archDenied []int

var mknodSyscalls [][2]int
