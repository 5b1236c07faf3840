package cli

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// requireBasic makes reg demand user:pass.
func requireBasic(reg *testRegistry, user, pass string) {
	reg.before = func(w http.ResponseWriter, r *http.Request) bool {
		u, p, ok := r.BasicAuth()
		if ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="kiln-test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	}
}

// authEntry decodes the "auth" of key in a docker config file.
func authEntry(t *testing.T, file, key string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	e, ok := cfg.Auths[key]
	if !ok {
		return ""
	}
	dec, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		t.Fatal(err)
	}
	return string(dec)
}

func TestLoginLogout(t *testing.T) {
	home := isolateAuth(t)
	dockerCfg := filepath.Join(home, "docker-config")
	t.Setenv("DOCKER_CONFIG", dockerCfg)
	cfgFile := filepath.Join(dockerCfg, "config.json")
	const user, pass = "AWS", "eyJwYXlsb2FkIjoiZWNyLXRva2VuLWxpa2UifQ=="
	reg := startRegistry(t)
	requireBasic(reg, user, pass)
	root := t.TempDir()

	// The aws ecr get-login-password | kiln login --username AWS --password-stdin REG flow.
	out, errOut, err := run(t, root, pass+"\n", "login", "--username", user, "--password-stdin", reg.host)
	if err != nil {
		t.Fatalf("login: %v\n%s", err, errOut)
	}
	if strings.TrimSpace(out) != "Login Succeeded" || strings.Contains(errOut, pass) || strings.Contains(errOut, "--password via the CLI") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	if got := authEntry(t, cfgFile, reg.host); got != user+":"+pass {
		t.Errorf("config.json entry %q", got)
	}
	if st, err := os.Stat(cfgFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v %v", st.Mode(), err)
	}
	// The credentials work for a push and for --get-login.
	buildApp(t, root, "scratch", 500, nil, reg.host+"/team/app:1")
	if _, errOut, err := run(t, root, "", "push", reg.host+"/team/app:1"); err != nil {
		t.Fatalf("push after login: %v\n%s", err, errOut)
	}
	if out, _, err := run(t, root, "", "login", "--get-login", reg.host); err != nil || strings.TrimSpace(out) != user {
		t.Errorf("--get-login: %q %v", out, err)
	}

	// -p works and warns.
	out, errOut, err = run(t, root, "", "login", "-u", user, "-p", pass, reg.host)
	if err != nil || strings.TrimSpace(out) != "Login Succeeded" {
		t.Fatalf("login -p: %v %q", err, out)
	}
	if !strings.Contains(errOut, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n") {
		t.Errorf("no -p warning: %q", errOut)
	}

	// A wrong password: an error naming the registry, never the password;
	// the stored credentials are untouched.
	const wrong = "not-the-password-123"
	_, errOut, err = run(t, root, wrong, "login", "-u", user, "--password-stdin", reg.host)
	if err == nil || !strings.Contains(err.Error(), "login to "+reg.host+" failed: unauthorized") ||
		strings.Contains(err.Error(), wrong) || strings.Contains(errOut, wrong) {
		t.Errorf("wrong password: %v / %q", err, errOut)
	}
	if got := authEntry(t, cfgFile, reg.host); got != user+":"+pass {
		t.Errorf("a failed login changed the entry to %q", got)
	}

	// Flag errors.
	for want, args := range map[string][]string{
		"--password and --password-stdin are mutually exclusive": {"login", "-u", "x", "-p", "y", "--password-stdin", reg.host},
		"--password-stdin needs --username":                      {"login", "--password-stdin", reg.host},
		"stdin is not a terminal":                                {"login", reg.host},
		"--password-stdin: stdin is empty":                       {"login", "-u", "x", "--password-stdin", reg.host},
		"invalid registry":                                       {"login", "-u", "x", "-p", "y", "ftp://x"},
	} {
		if _, _, err := run(t, root, "", args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", args, err, want)
		}
	}

	// logout removes the entry; a second logout says so and succeeds.
	out, _, err = run(t, root, "", "logout", reg.host)
	if err != nil || strings.TrimSpace(out) != "Removing login credentials for "+reg.host {
		t.Errorf("logout: %q %v", out, err)
	}
	if got := authEntry(t, cfgFile, reg.host); got != "" {
		t.Errorf("entry after logout: %q", got)
	}
	out, _, err = run(t, root, "", "logout", reg.host)
	if err != nil || strings.TrimSpace(out) != "Not logged in to "+reg.host {
		t.Errorf("second logout: %q %v", out, err)
	}
	// Without credentials the push is refused with a clear error.
	_, _, err = run(t, root, "", "--retry", "0", "push", reg.host+"/team/app:1")
	if err == nil || !strings.Contains(err.Error(), "unauthorized: no credentials found for "+reg.host) {
		t.Errorf("push after logout: %v", err)
	}
}

func TestLoginAuthfileAndWrongStoredPassword(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	requireBasic(reg, "alice", "right-password")
	root := t.TempDir()
	authfile := filepath.Join(t.TempDir(), "auth.json")
	if _, errOut, err := run(t, root, "right-password", "--authfile", authfile, "login", "-u", "alice", "--password-stdin", reg.host); err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	if got := authEntry(t, authfile, reg.host); got != "alice:right-password" {
		t.Errorf("--authfile entry %q", got)
	}
	// A stale password in the auth file: the push error names the file,
	// never the password.
	os.WriteFile(authfile, []byte(`{"auths":{"`+reg.host+`":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("alice:stale-secret-pw"))+`"}}}`), 0o600)
	buildApp(t, root, "scratch", 500, nil, reg.host+"/team/app:1")
	_, errOut, err := run(t, root, "", "--authfile", authfile, "--retry", "0", "push", reg.host+"/team/app:1")
	if err == nil || !strings.Contains(err.Error(), "credentials from "+authfile+" were rejected by "+reg.host) ||
		strings.Contains(err.Error(), "stale-secret-pw") || strings.Contains(errOut, "stale-secret-pw") {
		t.Errorf("stale password: %v", err)
	}
	// --creds override the file, warn, and are never echoed.
	if _, errOut, err := run(t, root, "", "--authfile", authfile, "push", "--creds", "alice:right-password", reg.host+"/team/app:1"); err != nil ||
		strings.Contains(errOut, "right-password") || !strings.Contains(errOut, "WARNING! A password on the command line (--creds) is visible to other users") {
		t.Errorf("--creds: %v %q", err, errOut)
	}
	if _, _, err := run(t, root, "", "push", "--creds", "alice", reg.host+"/team/app:1"); err == nil || !strings.Contains(err.Error(), "--creds alice: no password, and stdin is not a terminal") {
		t.Errorf("--creds without password: %v", err)
	}
	_, errOut, err = run(t, root, "", "--authfile", authfile, "--retry", "0", "push", "--creds", "alice:wrong-cli-pw", reg.host+"/team/app:1")
	if err == nil || !strings.Contains(err.Error(), "credentials from --creds were rejected") || strings.Contains(err.Error(), "wrong-cli-pw") || strings.Contains(errOut, "wrong-cli-pw") {
		t.Errorf("wrong --creds: %v", err)
	}
}
