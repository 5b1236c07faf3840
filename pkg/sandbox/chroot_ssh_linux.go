package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// socketRelay serves an ssh agent's socket in a working copy for a step
// of a mode without mount namespace (chroot): a socket can be neither
// moved nor copied into the root, and a hard link works only on the
// agent's own filesystem, so kiln listens at the target in the root
// (outside the chroot, where the agent can still be reached) and relays
// every connection to the agent. The socket is the caller's, mode 0600,
// as BuildKit's ssh mount; it and the directories made for it are
// removed when the step ends, before its diff.
type socketRelay struct {
	agent string
	// fds are the root and the target's directories in it, opened one
	// by one; the socket is in the last.
	fds []int
	// times are the directories' access and modification times before
	// the relay changed them, put back when it is gone (the diff walks
	// metadata: a directory whose mtime moved would be in the layer).
	times [][2]unix.Timespec
	name  string
	made  []madeDir
	ln    *net.UnixListener
	wg    sync.WaitGroup
	mu    sync.Mutex
	// conns are the relayed connections, closed with the relay.
	conns  map[net.Conn]bool
	closed bool
}

// madeDir is a directory made for the socket: its name in fds[parent].
type madeDir struct {
	parent int
	name   string
}

// relaySockets starts a relay for each socket mount of a step in the
// working copy dir and returns the other mounts.
func relaySockets(dir string, ms []Mount) ([]Mount, []*socketRelay, error) {
	var rest []Mount
	var relays []*socketRelay
	for _, m := range ms {
		if !m.Socket {
			rest = append(rest, m)
			continue
		}
		r, err := startRelay(dir, filepath.Clean("/"+m.Target), m.Source)
		if err != nil {
			closeRelays(relays)
			return nil, nil, fmt.Errorf("RUN --mount=type=ssh,target=%s: %w", m.Target, err)
		}
		relays = append(relays, r)
	}
	return rest, relays, nil
}

func closeRelays(rs []*socketRelay) {
	for i := len(rs) - 1; i >= 0; i-- {
		rs[i].close()
	}
}

const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// startRelay makes the target's missing directories in the root (never
// through a symlink or anything but a directory: the root is the image's)
// and listens at the target.
func startRelay(root, target, agent string) (*socketRelay, error) {
	r := &socketRelay{agent: agent, conns: map[net.Conn]bool{}}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	r.keep(fd)
	parts := strings.Split(strings.TrimPrefix(target, "/"), "/")
	for i, c := range parts[:len(parts)-1] {
		parent := r.fds[len(r.fds)-1]
		fd, err := unix.Openat(parent, c, dirFlags, 0)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(parent, c, 0o755); err == nil {
				r.made = append(r.made, madeDir{parent: len(r.fds) - 1, name: c})
				fd, err = unix.Openat(parent, c, dirFlags, 0)
			}
		}
		if err != nil {
			r.close()
			return nil, fmt.Errorf("/%s is not a directory in the image (%v)", strings.Join(parts[:i+1], "/"), err)
		}
		r.keep(fd)
	}
	dir := r.fds[len(r.fds)-1]
	r.name = parts[len(parts)-1]
	var st unix.Stat_t
	if unix.Fstatat(dir, r.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		r.close()
		return nil, fmt.Errorf("the image has %s, and without a mount namespace the agent's socket cannot be placed over it", target)
	}
	// The directory through its descriptor: the path in the root is never
	// resolved again.
	at := fmt.Sprintf("/proc/self/fd/%d/%s", dir, r.name)
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: at, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		r.close()
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	r.ln = ln
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// keep adds an open directory and records its times.
func (r *socketRelay) keep(fd int) {
	r.fds = append(r.fds, fd)
	var st unix.Stat_t
	var ts [2]unix.Timespec
	if unix.Fstat(fd, &st) == nil {
		ts = [2]unix.Timespec{st.Atim, st.Mtim}
	}
	r.times = append(r.times, ts)
}

func (r *socketRelay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		a, err := net.Dial("unix", r.agent)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c, a) {
			return
		}
		r.wg.Add(2)
		go r.pipe(c, a)
		go r.pipe(a, c)
	}
}

// track records a relayed pair (false, and both closed, once the relay
// is closed).
func (r *socketRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = true
	}
	return true
}

func (r *socketRelay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	if u, ok := dst.(*net.UnixConn); ok {
		_ = u.CloseWrite()
	}
}

// close stops the relay, closes its connections and removes the socket
// and the directories made for it (only when empty: what the step put
// there is its own).
func (r *socketRelay) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		_ = unix.Unlinkat(r.fds[len(r.fds)-1], r.name, 0)
	}
	r.wg.Wait()
	for i := len(r.made) - 1; i >= 0; i-- {
		_ = unix.Unlinkat(r.fds[r.made[i].parent], r.made[i].name, unix.AT_REMOVEDIR)
	}
	for i, fd := range r.fds {
		if i < len(r.times) && r.times[i][1].Sec != 0 {
			ts := r.times[i]
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts[:], 0)
		}
		unix.Close(fd)
	}
	r.fds, r.made, r.ln = nil, nil, nil
}
