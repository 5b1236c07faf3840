package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// RegistryBinary is the registry server that Debian's docker-registry
// package installs (CNCF distribution 2.8).
const RegistryBinary = "/usr/bin/docker-registry"

// RegistryPackage is the Debian package that provides RegistryBinary.
const RegistryPackage = "docker-registry"

// Registry is a running docker-registry process on 127.0.0.1, plain HTTP,
// no authentication, deletes enabled, storage on the local filesystem.
type Registry struct {
	// Addr is "127.0.0.1:PORT", usable as the registry part of a reference.
	Addr string
	// Dir holds the configuration (config.yml), the log (registry.log) and
	// the storage (storage/).
	Dir string

	cmd  *exec.Cmd
	done chan struct{}
}

// StartRegistry starts RegistryBinary on a free loopback port with its
// configuration, log and storage in dir (created if needed), and waits until
// it answers GET /v2/. Close stops it. The process is killed if the calling
// process dies first.
func StartRegistry(dir string) (*Registry, error) {
	if err := NeedExecutable(RegistryBinary, RegistryPackage); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	// The port is chosen by binding :0 and closing it before the registry
	// binds it, so another process can take it in between: retry then.
	for attempt := 0; attempt < 5; attempt++ {
		r, err := startRegistryOnce(dir)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// RegistryConfig returns a docker-registry configuration for addr with its
// storage in storageDir.
func RegistryConfig(addr, storageDir string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  headers:
    X-Content-Type-Options: [nosniff]
`, storageDir, addr)
}

func startRegistryOnce(dir string) (*Registry, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return startRegistryAt(dir, port)
}

// startRegistryAt starts the registry on 127.0.0.1:port and waits until
// it, and no other process that took the port, answers there.
func startRegistryAt(dir string, port int) (*Registry, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(conf, []byte(RegistryConfig(addr, filepath.Join(dir, "storage"))), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()

	cmd := exec.Command(RegistryBinary, "serve", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The distribution server reads REGISTRY_* variables as configuration
	// overrides: keep the caller's out of it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", RegistryBinary, err)
	}
	r := &Registry{Addr: addr, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(r.done)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if Ping(addr) == nil {
			if listenerIsOurs(cmd.Process.Pid, port) {
				return r, nil
			}
			_ = r.Close()
			return nil, fmt.Errorf("another process took %s before %s could", addr, RegistryBinary)
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("%s exited at start on %s: %s", RegistryBinary, addr, tail(logPath, 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = r.Close()
	return nil, fmt.Errorf("%s did not answer on http://%s/v2/ within 30s: %s", RegistryBinary, addr, tail(logPath, 2000))
}

// Close kills the registry process and waits for it to exit. The storage
// is left in Dir.
func (r *Registry) Close() error {
	if r == nil || r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	select {
	case <-r.done:
		return nil
	default:
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("registry process did not exit after SIGKILL")
	}
}

// Ping returns nil if a registry answers GET http://addr/v2/ with 200.
func Ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET http://%s/v2/: %s", addr, resp.Status)
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty log " + path + ")"
	}
	return "log " + path + ":\n" + s
}
