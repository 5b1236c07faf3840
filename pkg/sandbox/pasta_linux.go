package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// privateAddress is the step's address in a private network, and
// privatePrefix its network's prefix length (slirp4netns's plan, which
// pasta is told to follow).
const (
	privateAddress = "10.0.2.100"
	privatePrefix  = "24"
)

// pastaArgs are pasta's arguments for a step's private network: the
// namespace is descriptor 3 of pasta (its user namespace 4 when userns),
// the address plan is slirp4netns's, IPv4 only, and no port is forwarded
// either way (pasta's default forwards the host's bound ports into the
// namespace and back). Without hostLoopback, the gateway is not mapped to
// the host's loopback.
func pastaArgs(userns, hostLoopback bool, pidFile string) []string {
	args := []string{"--config-net", "--foreground", "--quiet",
		"--ns-ifname", privateTap, "--address", privateAddress, "--netmask", privatePrefix,
		"--gateway", privateGateway, "--dns-forward", privateDNS, "--mtu", privateMTU, "--ipv4-only",
		"--tcp-ports", "none", "--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",
		"--pid", pidFile, "--no-netns-quit", "--netns", "/proc/self/fd/3"}
	if userns {
		args = append(args, "--userns", "/proc/self/fd/4")
	}
	if !hostLoopback {
		args = append(args, "--no-map-gw")
	}
	if os.Geteuid() == 0 {
		// pasta started as root becomes nobody, who may not enter the
		// namespace; as root it keeps CAP_SYS_ADMIN and
		// CAP_NET_BIND_SERVICE only, under its own seccomp filter and
		// no_new_privs.
		args = append(args, "--runas", "0")
	}
	return args
}

// startPasta is startNetwork with pasta (Debian package passt). pasta
// writes its pid to a pipe kiln reads once the namespace is configured,
// and is killed when kiln's thread that started it dies (Pdeathsig: that
// thread stays locked until pasta ends) or by stop.
func startPasta(ctx context.Context, path string, pid int, hostLoopback bool) (stop func(), err error) {
	netns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("the step's network (pasta): %w", err)
	}
	defer netns.Close()
	files := []*os.File{netns}
	userns, err := otherUserNamespace(pid)
	if err != nil {
		return nil, fmt.Errorf("the step's network (pasta): %w", err)
	}
	if userns != nil {
		defer userns.Close()
		files = append(files, userns)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	files = append(files, readyW) // 4 or 5: pasta's --pid file
	pidFile := fmt.Sprintf("/proc/self/fd/%d", 2+len(files))
	var stderr bytes.Buffer
	cmd := exec.Command(path, pastaArgs(userns != nil, hostLoopback, pidFile)...)
	cmd.ExtraFiles = files
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// As for slirp4netns: whatever pasta does to its mounts stays in
		// a mount namespace of its own, recursively private.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that forked pasta: this one,
		// kept until pasta has ended.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	err = <-started
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting pasta: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	ready := make(chan error, 1)
	go func() {
		// The pid once configured; EOF (every write end closed):
		// pasta ended first.
		var b [32]byte
		n, err := readyR.Read(b[:])
		if n == 0 && (err == nil || err == io.EOF) {
			err = fmt.Errorf("pasta ended before the network was configured")
		} else if n > 0 {
			err = nil
		}
		ready <- err
	}()
	if err = waitReady(ctx, ready); err != nil {
		stop()
		return nil, fmt.Errorf("the step's network (pasta): %v %s", err, lastLine(stderr.String()))
	}
	return stop, nil
}

// otherUserNamespace opens process pid's user namespace when it is not
// this process's (nil when it is).
func otherUserNamespace(pid int) (*os.File, error) {
	mine, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return nil, err
	}
	p := fmt.Sprintf("/proc/%d/ns/user", pid)
	theirs, err := os.Readlink(p)
	if err != nil || theirs == mine {
		return nil, err
	}
	return os.Open(p)
}
