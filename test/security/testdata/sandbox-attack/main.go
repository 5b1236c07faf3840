// Command sandbox-attack runs inside a RUN step and tries what a hostile
// step would to get out of kiln's sandbox or reach the host. It prints one
// line per attempt, "NAME: blocked (why)" or "NAME: ALLOWED (what)", and
// "info NAME: ..." lines; test/security judges them.
//
//	KILN_ATTACK_IN_SANDBOX=yes sandbox-attack LOOP_MINOR ESCAPE_MARKER
//	KILN_ATTACK_IN_SANDBOX=yes sandbox-attack net ADDR:PORT...
//
// The net form lists the interfaces the step sees, tries packet and raw
// sockets on each and connects to each ADDR:PORT, printing the first line
// the server sends ("connect ADDR:PORT: LINE" or "... failed (why)").
//
// NEVER run it on a host: where the sandbox does not hold, it mounts,
// makes device nodes and attaches to pid 1. It refuses to start without
// KILN_ATTACK_IN_SANDBOX=yes, which only the tests set, in the step.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if os.Getenv("KILN_ATTACK_IN_SANDBOX") != "yes" {
		fmt.Fprintln(os.Stderr, "sandbox-attack: refusing to run outside a test's RUN step (KILN_ATTACK_IN_SANDBOX is not yes)")
		os.Exit(2)
	}
	if _, err := os.Stat("/kiln-attack-step"); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox-attack: /kiln-attack-step is missing: this is not the test's image")
		os.Exit(2)
	}
	if len(os.Args) > 1 && os.Args[1] == "net" {
		netAttack(os.Args[2:])
		return
	}
	minor := 0
	marker := "/nonexistent-kiln-marker"
	if len(os.Args) > 2 {
		minor, _ = strconv.Atoi(os.Args[1])
		marker = os.Args[2]
	}
	caps()
	status()
	try("mknod-block", func() (string, error) {
		if err := unix.Mknod("/kiln-blk", unix.S_IFBLK|0o600, int(unix.Mkdev(7, uint32(minor)))); err != nil {
			return "", err
		}
		defer os.Remove("/kiln-blk")
		b := make([]byte, 64)
		f, err := os.Open("/kiln-blk")
		if err != nil {
			return "made, not opened: " + err.Error(), nil
		}
		n, _ := f.Read(b)
		f.Close()
		return fmt.Sprintf("read %q", b[:n]), nil
	})
	try("mknod-char", func() (string, error) {
		err := unix.Mknod("/kiln-mem", unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1)))
		os.Remove("/kiln-mem")
		return "made /dev/mem's node", err
	})
	try("mount-proc", func() (string, error) {
		os.Mkdir("/kiln-p", 0o755)
		defer os.Remove("/kiln-p")
		err := unix.Mount("proc", "/kiln-p", "proc", 0, "")
		if err == nil {
			unix.Unmount("/kiln-p", unix.MNT_DETACH)
		}
		return "mounted a proc", err
	})
	try("mount-tmpfs", func() (string, error) {
		os.Mkdir("/kiln-t", 0o755)
		defer os.Remove("/kiln-t")
		err := unix.Mount("tmpfs", "/kiln-t", "tmpfs", 0, "")
		if err == nil {
			unix.Unmount("/kiln-t", unix.MNT_DETACH)
		}
		return "mounted a tmpfs", err
	})
	for _, p := range []string{"/proc/sys/fs/lease-break-time", "/proc/sysrq-trigger", "/sys/kernel/uevent_helper"} {
		p := p
		try("write "+p, func() (string, error) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return "", err
			}
			f.Close()
			return "opened for writing", nil
		})
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/latency_stats"} {
		p := p
		try("read "+p, func() (string, error) {
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			defer f.Close()
			n, err := f.Read(make([]byte, 16))
			if n == 0 {
				return "", fmt.Errorf("empty (%v)", err)
			}
			return fmt.Sprintf("read %d bytes", n), nil
		})
	}
	try("unshare-user", func() (string, error) {
		runtimeLockedFork := func() error { return unix.Unshare(unix.CLONE_NEWUSER) }
		return "made a user namespace", runtimeLockedFork()
	})
	try("clone-newuser", func() (string, error) {
		pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD|unix.CLONE_NEWUSER), 0, 0, 0, 0, 0)
		if errno != 0 {
			return "", errno
		}
		if pid == 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
		}
		var ws syscall.WaitStatus
		syscall.Wait4(int(pid), &ws, 0, nil)
		return "cloned into a user namespace", nil
	})
	try("keyctl", func() (string, error) {
		_, err := unix.KeyctlJoinSessionKeyring("kiln-attack")
		return "joined a keyring", err
	})
	try("add_key", func() (string, error) {
		_, err := unix.AddKey("user", "kiln-attack", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return "added a key", err
	})
	try("bpf", func() (string, error) {
		_, _, errno := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		if errno == unix.EPERM {
			return "", errno
		}
		return fmt.Sprintf("bpf reached the kernel (%v)", errno), nil
	})
	try("perf_event_open", func() (string, error) {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
		if err == nil {
			unix.Close(fd)
		}
		return "opened a perf event", err
	})
	try("userfaultfd", func() (string, error) {
		fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
		if errno != 0 {
			return "", errno
		}
		unix.Close(int(fd))
		return "made a userfaultfd", nil
	})
	try("ptrace-pid1", func() (string, error) {
		err := unix.PtraceAttach(1)
		if err == nil {
			unix.PtraceDetach(1)
		}
		return "attached to pid 1", err
	})
	try("raw-socket", func() (string, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
		return "opened a raw socket", err
	})
	try("packet-socket", func() (string, error) {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err == nil {
			unix.Close(fd)
		}
		return "opened a packet socket (sniffing)", err
	})
	try("settimeofday", func() (string, error) {
		var tv unix.Timeval
		if err := unix.Gettimeofday(&tv); err != nil {
			return "", err
		}
		return "set the clock", unix.Settimeofday(&tv)
	})
	try("chroot-escape", func() (string, error) { return chrootEscape(marker) })
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// chrootEscape is the classic double chroot: chroot into a subdirectory
// while keeping the current directory outside it, then walk up.
func chrootEscape(marker string) (string, error) {
	if err := os.MkdirAll("/kiln-jail", 0o755); err != nil {
		return "", err
	}
	defer os.Remove("/kiln-jail")
	if err := unix.Chroot("/kiln-jail"); err != nil {
		return "", err
	}
	for i := 0; i < 64; i++ {
		if err := unix.Chdir(".."); err != nil {
			return "", err
		}
	}
	if err := unix.Chroot("."); err != nil {
		return "", err
	}
	if _, err := os.Stat(marker); err != nil {
		return "", fmt.Errorf("chroot worked but the host is not in reach: %v", err)
	}
	return "reached the host's " + marker, nil
}

func try(name string, f func() (string, error)) {
	what, err := f()
	if err != nil {
		fmt.Printf("%s: blocked (%v)\n", name, err)
		return
	}
	fmt.Printf("%s: ALLOWED (%s)\n", name, what)
}

// caps prints the effective capabilities.
func caps() {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		fmt.Printf("info caps: %v\n", err)
		return
	}
	eff := uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	fmt.Printf("info caps: %016x\n", eff)
}

func status() {
	nnp, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	sec, _ := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	fmt.Printf("info no_new_privs: %d\ninfo seccomp: %d\n", nnp, sec)
}

// netAttack reports the step's network: its interfaces, whether it can
// sniff them (AF_PACKET bound to each) and whether it reaches each addr.
func netAttack(addrs []string) {
	caps()
	ifs, err := net.Interfaces()
	if err != nil {
		fmt.Printf("info interfaces: %v\n", err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	fmt.Printf("info interfaces: %s\n", strings.Join(names, ","))
	try("raw-socket", func() (string, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
		return "opened a raw socket", err
	})
	for _, i := range ifs {
		try("packet-socket "+i.Name, func() (string, error) {
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				return "", err
			}
			defer unix.Close(fd)
			return "sniffing " + i.Name, unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: i.Index})
		})
	}
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, 10*time.Second)
		if err != nil {
			fmt.Printf("connect %s: failed (%v)\n", a, err)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			fmt.Printf("connect %s: failed reading (%v)\n", a, err)
			continue
		}
		fmt.Printf("connect %s: %s\n", a, strings.TrimSpace(line))
	}
}
