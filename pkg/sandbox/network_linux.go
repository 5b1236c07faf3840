package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The networks a RUN step gets (runSpec.Network, after resolving the
// step's "", "default", "host" or "none").
const (
	// NetworkHost is the host's network namespace: the step sees the
	// host's interfaces, without CAP_NET_RAW (no raw or packet sockets)
	// and without CAP_NET_ADMIN.
	NetworkHost = "host"
	// NetworkNone is a network namespace of the step's own with only
	// loopback.
	NetworkNone = "none"
	// NetworkPrivate is a network namespace of the step's own with
	// outbound access through slirp4netns (docker's default network,
	// by a user-mode NAT): the step sees only lo and tap0, and reaches
	// what the host reaches, except the host's loopback addresses.
	NetworkPrivate = "private"
)

// The address plan of a private network (slirp4netns's defaults): the
// step is 10.0.2.100, its gateway 10.0.2.2 and its DNS forwarder
// 10.0.2.3.
const (
	privateGateway = "10.0.2.2"
	privateDNS     = "10.0.2.3"
	privateMTU     = "65520"
	privateTap     = "tap0"
)

var (
	slirpOnce sync.Once
	slirpPath string
	slirpWhy  string
)

// slirp4netns finds slirp4netns and checks that this user may open
// /dev/net/tun (it makes the step's tap device there); it returns the
// program's path, or "" and why not.
func slirp4netns() (string, string) {
	slirpOnce.Do(func() {
		p := lookHelper("slirp4netns")
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			slirpWhy = "slirp4netns is not installed (Debian package slirp4netns)"
			return
		}
		if err := unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK); err != nil {
			slirpWhy = "/dev/net/tun cannot be opened by this user (" + err.Error() + ")"
			return
		}
		slirpPath = p
	})
	return slirpPath, slirpWhy
}

// DefaultNetwork is the network a RUN step that asks for none in
// particular gets (NetworkPrivate or NetworkHost), and, for
// NetworkHost, why it gets no namespace of its own.
func (s *Sandbox) DefaultNetwork() (string, string) {
	n, why := resolveDefault(s.Features())
	return string(n), why
}

func resolveDefault(f Features) (Network, string) {
	if !f.NetworkNamespace {
		return NetworkHost, "this isolation mode cannot make a network namespace"
	}
	if _, why := slirp4netns(); why != "" {
		return NetworkHost, why
	}
	return NetworkPrivate, ""
}

// resolveNetwork turns the network a step asks for ("", NetworkDefault,
// NetworkHost, NetworkNone) into what it gets.
func resolveNetwork(f Features, asked Network) Network {
	switch asked {
	case NetworkHost, NetworkNone:
		return asked
	}
	n, _ := resolveDefault(f)
	return n
}

// privateResolv is the step's /etc/resolv.conf in a private network:
// the host's search and options lines, with slirp4netns's DNS forwarder
// as the only name server (the host's may be a loopback address, which
// the step cannot reach).
func privateResolv(host []byte) []byte {
	var b bytes.Buffer
	b.WriteString("nameserver " + privateDNS + "\n")
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "search ") || strings.HasPrefix(l, "domain ") || strings.HasPrefix(l, "options ") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

// slirpTimeout bounds the wait for slirp4netns to configure the step's
// network.
const slirpTimeout = 30 * time.Second

// startNetwork connects the network namespace of process pid (a helper
// that waits for its job) to the outside with slirp4netns, and returns
// once the namespace has its tap device, address, route and DNS
// forwarder. stop ends slirp4netns (it also ends when kiln dies: its
// exit descriptor closes). With hostLoopback, the gateway 10.0.2.2
// forwards to the host's loopback (--add-host NAME:host-gateway); else
// the host's loopback services are out of the step's reach.
func startNetwork(ctx context.Context, pid int, hostLoopback bool) (stop func(), err error) {
	path, why := slirp4netns()
	if path == "" {
		return nil, errors.New(why)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, err
	}
	var stderr bytes.Buffer
	args := []string{"--configure", "--mtu=" + privateMTU}
	if !hostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	args = append(args, "--enable-sandbox", "--enable-seccomp", "--ready-fd=3", "--exit-fd=4", strconv.Itoa(pid), privateTap)
	cmd := exec.Command(path, args...)
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	cmd.Stderr = &stderr
	// Its own process group: a terminal's ^C reaches kiln, which ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		// slirp4netns's --enable-sandbox makes "/" private without
		// MS_REC, pivots into a tmpfs and detaches the old root: in the
		// host's mount namespace that detach reached every shared mount
		// (a container runtime's data root) and unmounted its containers'
		// roots. A mount namespace of its own, made recursively private
		// before exec (Go does that for CLONE_NEWNS), keeps it there.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	err = cmd.Start()
	readyW.Close()
	exitR.Close()
	if err != nil {
		readyR.Close()
		exitW.Close()
		return nil, fmt.Errorf("starting slirp4netns: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = func() {
		exitW.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := readyR.Read(b[:])
		ready <- err
	}()
	timer := time.NewTimer(slirpTimeout)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("not ready after %s", slirpTimeout)
	}
	readyR.Close()
	if err != nil {
		stop()
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, fmt.Errorf("the step's network (slirp4netns): %v %s", err, msg)
	}
	return stop, nil
}

// reportNetwork tells doctor what network RUN steps get by default.
func reportNetwork(rep *Report, s *Sandbox) {
	n, why := s.DefaultNetwork()
	if n == NetworkPrivate {
		rep.add("network", true, "RUN steps get a network namespace of their own with outbound access (slirp4netns), as docker's default bridge gives", "")
		return
	}
	fix := "allow user namespaces (or, as root, CAP_SYS_ADMIN) so that root or userns mode can make a network namespace"
	if s.Features().NetworkNamespace {
		fix = "install slirp4netns (Debian package slirp4netns) and let this user open /dev/net/tun (mode 0666, as Debian's udev rules set it)"
	}
	rep.add("network", false, "RUN steps share the host's network namespace ("+why+"), without CAP_NET_RAW or CAP_NET_ADMIN: they reach what the host reaches, its loopback services included", fix)
}
