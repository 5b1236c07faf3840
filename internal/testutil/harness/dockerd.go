package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The programs of Debian's docker.io package (dockerd 20.10 with BuildKit
// built in) and of containerd, which it depends on. Tests always call
// DockerBinary, never a docker found in PATH (which may be another build).
const (
	DockerBinary     = "/usr/bin/docker"
	DockerdBinary    = "/usr/sbin/dockerd"
	ContainerdBinary = "/usr/bin/containerd"
	DockerPackage    = "docker.io"
)

// Dockerd is a private docker daemon with its own containerd: its own
// data root, exec root, pid file, configuration and socket, all under Dir;
// no iptables rules and no bridge (containers and builds use
// `--network host` or `--network none`). It shares nothing with a system
// docker or containerd.
type Dockerd struct {
	// Host is the daemon's address for DOCKER_HOST: "unix://DIR/docker.sock".
	Host string
	// Dir holds everything: data/, exec/, containerd/, docker.sock,
	// dockerd.log, containerd.log and the client's configuration (cli/).
	Dir string

	dockerd, containerd *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// StartDockerd starts containerd and dockerd as root with everything in a
// new directory under parent (os.TempDir() when empty; a short path, since
// unix socket paths are limited to 108 bytes), and waits until dockerd
// answers /_ping. Close stops both. They are killed if the calling process
// dies first. It needs root: dockerd cannot run rootless here.
func StartDockerd(parent string) (*Dockerd, error) {
	for _, p := range []string{DockerBinary, DockerdBinary, ContainerdBinary} {
		if err := NeedExecutable(p, DockerPackage); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() != 0 {
		return nil, &MissingError{Path: DockerdBinary, Package: DockerPackage,
			Detail: "the test's docker daemon needs root (run the tests as root, as CI does)"}
	}
	if parent == "" {
		parent = os.TempDir()
		if len(parent) > 40 {
			parent = "/tmp"
		}
	}
	dir, err := os.MkdirTemp(parent, "kiln-dockerd-")
	if err != nil {
		return nil, err
	}
	d := &Dockerd{Dir: dir, Host: "unix://" + filepath.Join(dir, "docker.sock")}
	if err := d.start(); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dockerd) start() error {
	ctd := filepath.Join(d.Dir, "containerd")
	for _, sub := range []string{ctd, filepath.Join(d.Dir, "cli")} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return err
		}
	}
	ctdSock := filepath.Join(ctd, "containerd.sock")
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(ctd, "root"), filepath.Join(ctd, "state"), ctdSock, ctdSock+".ttrpc")
	files := map[string]string{
		filepath.Join(ctd, "config.toml"):          conf,
		filepath.Join(d.Dir, "daemon.json"):        "{}\n",
		filepath.Join(d.Dir, "cli", "config.json"): "{}\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	var err error
	d.containerd, err = startProcess(filepath.Join(d.Dir, "containerd.log"), ContainerdBinary,
		"--config", filepath.Join(ctd, "config.toml"))
	if err != nil {
		return err
	}
	if err := waitFor(d.containerd, 30*time.Second, func() error {
		c, err := net.Dial("unix", ctdSock)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	d.dockerd, err = startProcess(filepath.Join(d.Dir, "dockerd.log"), DockerdBinary,
		"--config-file", filepath.Join(d.Dir, "daemon.json"),
		"--data-root", filepath.Join(d.Dir, "data"),
		"--exec-root", filepath.Join(d.Dir, "exec"),
		"--pidfile", filepath.Join(d.Dir, "dockerd.pid"),
		"--host", d.Host,
		"--containerd", ctdSock,
		"--iptables=false", "--ip6tables=false", "--bridge=none",
	)
	if err != nil {
		return err
	}
	if err := waitFor(d.dockerd, 90*time.Second, d.ping); err != nil {
		return fmt.Errorf("dockerd: %w", err)
	}
	return nil
}

func startProcess(logPath, bin string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = daemonEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// daemonEnv is the environment of the daemons: the caller's without
// DOCKER_* and proxy variables (a test's registry and HTTP server are on
// loopback; a proxy would not reach them).
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY":
			continue
		}
		if strings.HasPrefix(k, "DOCKER_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitFor polls ready until it returns nil, the process exits, or the
// timeout passes.
func waitFor(p *process, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = ready(); err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited at start: %s", tail(p.log, 3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready within %s (%v): %s", timeout, err, tail(p.log, 3000))
}

func (d *Dockerd) ping() error {
	sock := strings.TrimPrefix(d.Host, "unix://")
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", sock)
		},
	}, Timeout: 2 * time.Second}
	resp, err := client.Get("http://docker/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /_ping: %s", resp.Status)
	}
	return nil
}

// Env returns the environment for DockerBinary talking to this daemon:
// the caller's, with DOCKER_HOST, DOCKER_BUILDKIT=1 and a private client
// configuration (DOCKER_CONFIG, so no credential helper of the machine
// runs) replacing any DOCKER_* of the caller.
func (d *Dockerd) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return append(env, "DOCKER_HOST="+d.Host, "DOCKER_BUILDKIT=1",
		"DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"))
}

// Command returns `docker ARGS…` (DockerBinary) set up for this daemon.
func (d *Dockerd) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, DockerBinary, args...)
	cmd.Env = d.Env()
	return cmd
}

// Close stops dockerd (SIGTERM, then SIGKILL after 30 s) and then
// containerd, by their process ids, unmounts whatever they left mounted
// under Dir, and removes Dir.
func (d *Dockerd) Close() error {
	if d == nil {
		return nil
	}
	var errs []error
	for _, p := range []*process{d.dockerd, d.containerd} {
		if err := p.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	unmountUnder(d.Dir)
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *process) stop() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop on SIGTERM within 30s (killed)", p.cmd.Path)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit after SIGKILL", p.cmd.Path)
	}
}

// unmountUnder lazily unmounts every mount point under dir, deepest first
// (overlays or shm mounts a killed daemon left behind).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
