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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The networks a RUN step gets (runSpec.Network, after resolveNetwork;
// NetworkDefault, network.go, is only asked for).
const (
	// NetworkHost is the host's network namespace: the step sees the
	// host's interfaces, without CAP_NET_RAW (no raw or packet sockets)
	// and without CAP_NET_ADMIN.
	NetworkHost Network = "host"
	// NetworkNone is a network namespace of the step's own with only
	// loopback.
	NetworkNone Network = "none"
	// NetworkPrivate is a network namespace of the step's own with
	// outbound access through slirp4netns or pasta (docker's default
	// network, by a user-mode NAT): the step sees only lo and tap0, and reaches
	// what the host reaches, except the host's loopback addresses.
	NetworkPrivate Network = "private"
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

// NetworkCmdEnv chooses the program that connects a step's private
// network: "slirp4netns" or "pasta" (Debian package passt); unset or
// "auto", slirp4netns where it is installed, else pasta (podman's
// default_rootless_network_cmd).
const NetworkCmdEnv = "KILN_NETWORK_CMD"

// The programs that can connect a private network.
const (
	cmdSlirp4netns = "slirp4netns"
	cmdPasta       = "pasta"
)

// networkCmd finds the program that connects private networks
// (slirp4netns or pasta, as NetworkCmdEnv asks) and checks that this user
// may open /dev/net/tun (the step's tap device is made there); it returns
// the program's name and path, or "" and why not.
func networkCmd() (name, path, why string) {
	var names []string
	switch v := os.Getenv(NetworkCmdEnv); v {
	case "", "auto":
		names = []string{cmdSlirp4netns, cmdPasta}
	case cmdSlirp4netns, cmdPasta:
		names = []string{v}
	default:
		return "", "", fmt.Sprintf("%s=%q: want slirp4netns, pasta or auto", NetworkCmdEnv, v)
	}
	for _, n := range names {
		p := lookHelper(n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			name, path = n, p
			break
		}
	}
	switch {
	case path == "" && len(names) == 1 && names[0] == cmdPasta:
		return "", "", "pasta is not installed (Debian package passt)"
	case path == "" && len(names) == 1:
		return "", "", "slirp4netns is not installed (Debian package slirp4netns)"
	case path == "":
		return "", "", "neither slirp4netns nor pasta is installed (Debian packages slirp4netns, passt)"
	}
	if err := unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK); err != nil {
		return "", "", "/dev/net/tun cannot be opened by this user (" + err.Error() + ")"
	}
	return name, path, ""
}

// DefaultNetwork is the network a RUN step that asks for none in
// particular gets (NetworkPrivate or NetworkHost), and, for
// NetworkHost, why it gets no namespace of its own.
func (s *Sandbox) DefaultNetwork() (Network, string) {
	return resolveDefault(s.Features())
}

func resolveDefault(f Features) (Network, string) {
	if !f.NetworkNamespace {
		return NetworkHost, "this isolation mode cannot make a network namespace"
	}
	if _, _, why := networkCmd(); why != "" {
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

// slirpTimeout bounds the wait for slirp4netns or pasta to configure the
// step's network.
const slirpTimeout = 30 * time.Second

// startNetwork connects the network namespace of process pid (a helper
// that waits for its job) to the outside with slirp4netns or pasta, and
// returns once the namespace has its tap device, address, route and DNS
// forwarder. stop ends the program (it also ends when kiln dies). With
// hostLoopback, the gateway 10.0.2.2 forwards to the host's loopback
// (--add-host NAME:host-gateway); else the host's loopback services are
// out of the step's reach.
func startNetwork(ctx context.Context, pid int, hostLoopback bool) (stop func(), err error) {
	name, path, why := networkCmd()
	switch {
	case path == "":
		return nil, errors.New(why)
	case name == cmdPasta:
		return startPasta(ctx, path, pid, hostLoopback)
	}
	return startSlirp(ctx, path, pid, hostLoopback)
}

// startSlirp is startNetwork with slirp4netns, which ends when its exit
// descriptor closes.
func startSlirp(ctx context.Context, path string, pid int, hostLoopback bool) (stop func(), err error) {
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
	err = waitReady(ctx, ready)
	readyR.Close()
	if err != nil {
		stop()
		return nil, fmt.Errorf("the step's network (slirp4netns): %v %s", err, lastLine(stderr.String()))
	}
	return stop, nil
}

// waitReady waits for ready, ctx or slirpTimeout.
func waitReady(ctx context.Context, ready <-chan error) error {
	timer := time.NewTimer(slirpTimeout)
	defer timer.Stop()
	select {
	case err := <-ready:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("not ready after %s", slirpTimeout)
	}
}

// lastLine is the last line of a program's stderr.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// reportNetwork tells doctor what network RUN steps get by default.
func reportNetwork(rep *Report, s *Sandbox) {
	n, why := s.DefaultNetwork()
	if n == NetworkPrivate {
		name, _, _ := networkCmd()
		rep.add("network", true, "RUN steps get a network namespace of their own with outbound access ("+name+"), as docker's default bridge gives", "")
		return
	}
	fix := "allow user namespaces (or, as root, CAP_SYS_ADMIN) so that root or userns mode can make a network namespace"
	if s.Features().NetworkNamespace {
		fix = "install slirp4netns or passt (Debian packages slirp4netns, passt) and let this user open /dev/net/tun (mode 0666, as Debian's udev rules set it)"
	}
	rep.add("network", false, "RUN steps share the host's network namespace ("+why+"), without CAP_NET_RAW or CAP_NET_ADMIN: they reach what the host reaches, its loopback services included", fix)
}
