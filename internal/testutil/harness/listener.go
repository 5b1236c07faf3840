package harness

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listenerIsOurs reports whether the TCP socket listening on 127.0.0.1:port
// belongs to process pid. A port from FreePort is free only a moment ago:
// another test's server (an in-process registry that also answers /v2/)
// can bind it before our registry does, and a ping would then get the
// other server's answer while ours exits with "address in use". Where the
// kernel's tables cannot be read it says yes (the ping decides alone).
func listenerIsOurs(pid, port int) bool {
	inode, ok := listeningInode(port)
	if !ok {
		return true
	}
	if inode == "" {
		return false
	}
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return true
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name())); err == nil && l == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}

// listeningInode returns the socket inode listening on 127.0.0.1:port
// ("" when none), from /proc/net/tcp; ok is false when that cannot be read.
func listeningInode(port int) (inode string, ok bool) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", false
	}
	defer f.Close()
	// local_address is hex "0100007F:PORT" for 127.0.0.1; st 0A is LISTEN.
	want := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == want && fields[3] == "0A" {
			return fields[9], true
		}
	}
	return "", sc.Err() == nil
}
