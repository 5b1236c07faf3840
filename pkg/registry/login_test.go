package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
)

// readJSON decodes a JSON file into a generic map.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// authOf returns the decoded "auth" of key in file, or "" if absent.
func authOf(t *testing.T, path, key string) string {
	t.Helper()
	m := readJSON(t, path)
	auths, _ := m["auths"].(map[string]any)
	e, _ := auths[key].(map[string]any)
	s, _ := e["auth"].(string)
	if s == "" {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}

func TestSaveAuth(t *testing.T) {
	isolateEnv(t)
	dir := filepath.Join(t.TempDir(), "new", "dir")
	file := filepath.Join(dir, "config.json")
	if err := SaveAuth(file, "reg.example.com:5000", "alice", "pw:with:colons"); err != nil {
		t.Fatal(err)
	}
	wantMode(t, file, 0o600)
	wantMode(t, dir, 0o700)
	if got := authOf(t, file, "reg.example.com:5000"); got != "alice:pw:with:colons" {
		t.Errorf("auth = %q", got)
	}
	// The keychain reads back what SaveAuth wrote.
	wantUser(t, Options{AuthFile: file}, "reg.example.com:5000/app", "alice", "pw:with:colons")

	// Existing content and unknown fields survive; the file becomes 0600.
	existing := `{
	"auths": {
		"other.example.com": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("bob:x")) + `", "email": "bob@example.com"},
		"https://reg2.example.com/v1/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("old:old")) + `"}
	},
	"credsStore": "pass",
	"HttpHeaders": {"X-Custom": "yes"},
	"proxies": {"default": {"httpProxy": "http://proxy:3128"}}
}`
	file2 := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file2, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SaveAuth(file2, "https://reg2.example.com", "new", "newpw"); err != nil {
		t.Fatal(err)
	}
	wantMode(t, file2, 0o600)
	m := readJSON(t, file2)
	if m["credsStore"] != "pass" {
		t.Errorf("credsStore lost: %v", m["credsStore"])
	}
	if h, _ := m["HttpHeaders"].(map[string]any); h["X-Custom"] != "yes" {
		t.Errorf("HttpHeaders lost: %v", m["HttpHeaders"])
	}
	if _, ok := m["proxies"]; !ok {
		t.Error("proxies lost")
	}
	auths := m["auths"].(map[string]any)
	if e, _ := auths["other.example.com"].(map[string]any); e["email"] != "bob@example.com" {
		t.Errorf("other entry changed: %v", auths["other.example.com"])
	}
	if _, ok := auths["https://reg2.example.com/v1/"]; ok {
		t.Error("the old spelling of reg2's key is still there")
	}
	if got := authOf(t, file2, "reg2.example.com"); got != "new:newpw" {
		t.Errorf("reg2 auth = %q", got)
	}

	// Docker Hub is written under docker's key; podman's per-namespace keys as given.
	if err := SaveAuth(file2, "docker.io", "hubuser", "hubpw"); err != nil {
		t.Fatal(err)
	}
	if got := authOf(t, file2, "https://index.docker.io/v1/"); got != "hubuser:hubpw" {
		t.Errorf("hub auth = %q", got)
	}
	if err := SaveAuth(file2, "quay.example.com/team", "teamuser", "teampw"); err != nil {
		t.Fatal(err)
	}
	if got := authOf(t, file2, "quay.example.com/team"); got != "teamuser:teampw" {
		t.Errorf("per-namespace auth = %q", got)
	}

	// No temp files left behind.
	entries, _ := os.ReadDir(filepath.Dir(file2))
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only config.json", names)
	}

	// A symlinked file is updated at its target.
	target := filepath.Join(t.TempDir(), "real.json")
	link := filepath.Join(t.TempDir(), "link.json")
	if err := os.WriteFile(target, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := SaveAuth(link, "reg.example.com", "u", "p"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced by a file")
	}
	if got := authOf(t, target, "reg.example.com"); got != "u:p" {
		t.Errorf("symlink target auth = %q", got)
	}

	// A malformed file is not overwritten, and the error names it.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"auths": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := SaveAuth(bad, "reg.example.com", "u", "secretpw")
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "secretpw") {
		t.Errorf("malformed file: error %v", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != `{"auths": {` {
		t.Errorf("malformed file was rewritten: %q", b)
	}
	if err := SaveAuth(file, "reg.example.com", "a:b", "p"); err == nil {
		t.Error("a username with ':' was accepted")
	}
	if err := SaveAuth(file, "ftp://reg.example.com", "a", "p"); err == nil {
		t.Error("an ftp:// registry was accepted")
	}
}

func TestLoginAuthFile(t *testing.T) {
	home := isolateEnv(t)
	got, err := New(Options{}).LoginAuthFile()
	if want := filepath.Join(home, ".docker", "config.json"); err != nil || got != want {
		t.Errorf("default: %q, %v; want %q", got, err, want)
	}
	dc := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dc)
	if got, _ := New(Options{}).LoginAuthFile(); got != filepath.Join(dc, "config.json") {
		t.Errorf("DOCKER_CONFIG: %q", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(t.TempDir(), "absent"))
	if got, _ := New(Options{}).LoginAuthFile(); got != filepath.Join(dc, "config.json") {
		t.Errorf("XDG_RUNTIME_DIR missing: %q, want docker's file", got)
	}
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	if got, _ := New(Options{}).LoginAuthFile(); got != filepath.Join(xdg, "containers", "auth.json") {
		t.Errorf("XDG_RUNTIME_DIR: %q", got)
	}
	t.Setenv("REGISTRY_AUTH_FILE", "/env/auth.json")
	if got, _ := New(Options{}).LoginAuthFile(); got != "/env/auth.json" {
		t.Errorf("REGISTRY_AUTH_FILE: %q", got)
	}
	if got, _ := New(Options{AuthFile: "/flag/auth.json"}).LoginAuthFile(); got != "/flag/auth.json" {
		t.Errorf("AuthFile: %q", got)
	}
}

func TestLoginBasic(t *testing.T) {
	home := isolateEnv(t)
	const user, pass = "carol", "s3cure-Pa55"
	host := newRegistry(t, basicAuth(user, pass))
	o := fastOpts()

	const wrong = "guessed-wrong"
	_, err := New(o).Login(context.Background(), host, user, wrong)
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if want := "login to " + host + " failed: unauthorized"; !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("error %q, want %q", err, want)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error %q contains the password", err)
	}
	file := filepath.Join(home, ".docker", "config.json")
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed login wrote %s", file)
	}

	if _, err := New(o).Login(context.Background(), "http://"+host+"/", user, pass); err != nil {
		t.Fatalf("login: %v", err)
	}
	wantMode(t, file, 0o600)
	if got := authOf(t, file, host); got != user+":"+pass {
		t.Errorf("stored %q", got)
	}
	// The stored credentials are used.
	seedImage(t, host+"/a:1", &authn.Basic{Username: user, Password: pass}, 64, 1)
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/a:1", o)); err != nil {
		t.Fatalf("Fetch after login: %v", err)
	}

	if err := New(o).Logout(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	if got := authOf(t, file, host); got != "" {
		t.Errorf("logout left %q", got)
	}
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/a:1", o)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Fetch after logout: %v, want unauthorized", err)
	}
}

func TestLoginBearer(t *testing.T) {
	isolateEnv(t)
	const user, pass = "dave", "correct-bearer-pw"
	ba := newBearerAuth(user, pass)
	host := newRegistry(t, ba.wrap)
	authFile := filepath.Join(t.TempDir(), "auth.json")
	o := fastOpts()
	o.AuthFile = authFile

	_, err := New(o).Login(context.Background(), host, user, "bad-bearer-pw")
	if err == nil || !strings.HasPrefix(err.Error(), "login to "+host+" failed: unauthorized") {
		t.Fatalf("wrong password: error %v", err)
	}
	if strings.Contains(err.Error(), "bad-bearer-pw") {
		t.Errorf("error %q contains the password", err)
	}
	if ba.tokenReqs.Load() == 0 {
		t.Error("the token endpoint was not asked")
	}
	if _, err := New(o).Login(context.Background(), host, user, pass); err != nil {
		t.Fatalf("login: %v", err)
	}
	if got := authOf(t, authFile, host); got != user+":"+pass {
		t.Errorf("stored %q", got)
	}
	wantMode(t, authFile, 0o600)
}

func TestLoginErrors(t *testing.T) {
	isolateEnv(t)
	o := fastOpts()
	o.Retries = -1
	if _, err := New(o).Login(context.Background(), "127.0.0.1:1", "u", "pw-here"); err == nil ||
		!errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "login to 127.0.0.1:1 failed: cannot reach registry") ||
		strings.Contains(err.Error(), "pw-here") {
		t.Errorf("closed port: %v", err)
	}
	if _, err := New(o).Login(context.Background(), "reg.example.com", "", "pw"); err == nil {
		t.Error("empty username accepted")
	}
	if _, err := New(o).Login(context.Background(), "reg.example.com", "u", ""); err == nil {
		t.Error("empty password accepted")
	}
}

func TestLogout(t *testing.T) {
	home := isolateEnv(t)
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	podman := filepath.Join(xdg, "containers", "auth.json")
	docker := filepath.Join(home, ".docker", "config.json")
	writeAuthFile(t, podman, map[string]string{"reg.example.com": "a:b", "keep.example.com": "k:k"}, nil)
	writeAuthFile(t, docker, map[string]string{"https://reg.example.com/v1/": "c:d", "reg.example.com/team": "t:t"}, map[string]any{"credsStore": "x"})

	if err := New(Options{}).Logout(context.Background(), "reg.example.com"); err != nil {
		t.Fatal(err)
	}
	if authOf(t, podman, "reg.example.com") != "" || authOf(t, docker, "https://reg.example.com/v1/") != "" {
		t.Error("an entry for reg.example.com is left")
	}
	if authOf(t, podman, "keep.example.com") != "k:k" {
		t.Error("keep.example.com was removed")
	}
	if authOf(t, docker, "reg.example.com/team") != "t:t" {
		t.Error("the per-namespace entry was removed by a registry logout")
	}
	if readJSON(t, docker)["credsStore"] != "x" {
		t.Error("credsStore lost")
	}
	wantMode(t, podman, 0o600)
	wantMode(t, docker, 0o600)

	err := New(Options{}).Logout(context.Background(), "reg.example.com")
	if err == nil || !strings.Contains(err.Error(), "not logged in to reg.example.com") {
		t.Errorf("second logout: %v", err)
	}
	if err := New(Options{}).Logout(context.Background(), "reg.example.com/team"); err != nil {
		t.Errorf("per-namespace logout: %v", err)
	}
	// Docker Hub under any alias.
	writeAuthFile(t, docker, map[string]string{"https://index.docker.io/v1/": "h:h", "docker.io": "h2:h2"}, nil)
	if err := New(Options{}).Logout(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, docker)["auths"].(map[string]any); len(m) != 0 {
		t.Errorf("hub entries left: %v", m)
	}
}
