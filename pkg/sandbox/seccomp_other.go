//go:build linux && !amd64 && !arm64

package sandbox

const auditArch = 0

const x32ABI = 0

var chownSyscalls []int

var archDenied []int

var mknodSyscalls [][2]int
