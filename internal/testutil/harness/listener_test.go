package harness

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// TestListenerIsOurs: the socket listening on a port is told to be this
// process's, and not another process's; a port nobody listens on is no
// one's.
func TestListenerIsOurs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if !listenerIsOurs(os.Getpid(), port) {
		t.Errorf("our own listener on %d is not ours", port)
	}
	// (When the parent's descriptors can be read: else the answer is yes.)
	if _, err := os.ReadDir("/proc/" + strconv.Itoa(os.Getppid()) + "/fd"); err == nil && listenerIsOurs(os.Getppid(), port) {
		t.Errorf("our listener on %d is taken for our parent's", port)
	}
	l.Close()
	if listenerIsOurs(os.Getpid(), port) {
		t.Errorf("a closed listener on %d is still ours", port)
	}
}
