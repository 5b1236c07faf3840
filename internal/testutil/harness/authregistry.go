package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ServerConfig says how StartRegistryServer configures docker-registry
// beyond StartRegistry's plain HTTP without authentication.
type ServerConfig struct {
	// TLS, when set, makes the registry serve HTTPS with a certificate
	// from this CA for 127.0.0.1 and localhost.
	TLS *CA
	// Htpasswd, when set, is an htpasswd file (bcrypt entries; see
	// WriteHtpasswd): basic authentication ("auth: htpasswd").
	Htpasswd string
	// Token, when set, is the authorization service of bearer-token
	// authentication ("auth: token"). Htpasswd and Token are exclusive.
	Token *TokenService
}

// StartRegistryServer starts RegistryBinary like StartRegistry does, on a
// free 127.0.0.1 port with its configuration, log and storage in dir, but
// with TLS and authentication as c says. It waits until GET /v2/ answers
// 200 or 401. The Registry's Addr is "127.0.0.1:PORT"; its scheme is https
// when c.TLS is set.
func StartRegistryServer(dir string, c ServerConfig) (*Registry, error) {
	if err := NeedExecutable(RegistryBinary, RegistryPackage); err != nil {
		return nil, err
	}
	if c.Htpasswd != "" && c.Token != nil {
		return nil, fmt.Errorf("registry server: htpasswd and token authentication are exclusive")
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, err
	}
	var certFile, keyFile string
	if c.TLS != nil {
		var err error
		if certFile, keyFile, err = c.TLS.IssueFiles(dir, "registry", "127.0.0.1", "localhost"); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r, err := startServerOnce(dir, c, certFile, keyFile)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// ServerConfigYAML returns the docker-registry configuration of a server
// on addr with its storage in storageDir, TLS from certFile and keyFile
// (when not empty) and the authentication c asks for.
func ServerConfigYAML(addr, storageDir string, c ServerConfig, certFile, keyFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
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
  secret: kiln-test-secret
  headers:
    X-Content-Type-Options: [nosniff]
`, storageDir, addr)
	if certFile != "" {
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	switch {
	case c.Htpasswd != "":
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: kiln-test-registry\n    path: %s\n", c.Htpasswd)
	case c.Token != nil:
		fmt.Fprintf(&b, "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			c.Token.Realm, c.Token.Service, c.Token.Issuer, c.Token.RootCertBundle)
	}
	return b.String()
}

func startServerOnce(dir string, c ServerConfig, certFile, keyFile string) (*Registry, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "config.yml")
	yml := ServerConfigYAML(addr, filepath.Join(dir, "storage"), c, certFile, keyFile)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
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

	scheme, client := "http", &http.Client{Timeout: 2 * time.Second}
	if c.TLS != nil {
		scheme, client = "https", c.TLS.Client()
		client.Timeout = 2 * time.Second
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if pingAny(client, scheme+"://"+addr+"/v2/") == nil {
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
	return nil, fmt.Errorf("%s did not answer on %s://%s/v2/ within 30s: %s", RegistryBinary, scheme, addr, tail(logPath, 2000))
}

// pingAny returns nil if GET url answers 200 or 401.
func pingAny(c *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// WriteHtpasswd writes an htpasswd file of users (name to password) with
// bcrypt hashes, the only kind docker-registry accepts. The cost is
// bcrypt's minimum: these are test passwords, and every request pays it.
func WriteHtpasswd(path string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		if u == "" || strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("htpasswd: invalid user name %q", u)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
