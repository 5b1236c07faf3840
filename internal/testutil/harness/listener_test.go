package harness

import (
	"net"
	"net/http"
	"net/http/httptest"
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

// TestRegistryNotAnImpostor: when another server (one that answers /v2/
// as a registry does) holds the port before docker-registry can bind it,
// the start fails instead of handing out the other server's address.
func TestRegistryNotAnImpostor(t *testing.T) {
	if err := NeedExecutable(RegistryBinary, RegistryPackage); err != nil {
		t.Skip(err)
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	port := other.Listener.Addr().(*net.TCPAddr).Port
	r, err := startRegistryAt(t.TempDir(), port)
	if err == nil {
		_ = r.Close()
		t.Fatalf("the registry started on %d, which another server holds", port)
	}
	t.Logf("%v", err)
}
