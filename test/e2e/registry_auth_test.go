package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// authFile is the part of docker's config.json and containers' auth.json
// that holds credentials.
type authFile struct {
	Auths map[string]struct {
		Auth string `json:"auth"`
	} `json:"auths"`
}

// readAuth reads an auth file and returns the decoded "user:password" of
// host ("" if the file has no entry for host). It fails the test if the
// file is not private (0600).
func readAuth(t *testing.T, path, host string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("auth file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f authFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	e, ok := f.Auths[host]
	if !ok {
		return ""
	}
	dec, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		t.Fatalf("%s: auth of %s is not base64: %v", path, host, err)
	}
	return string(dec)
}

// writeDockerConfig writes a docker config.json in dir with the set-up's
// credentials, as `docker login` would have.
func writeDockerConfig(t *testing.T, dir string, s *testutil.RegistrySetup, password string) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(s.User + ":" + password))
	p := filepath.Join(dir, "config.json")
	writeFile(t, p, `{"auths":{"`+s.Addr+`":{"auth":"`+auth+`"}}}`+"\n")
	return p
}

// TestRegistryLogin checks login, logout and the credential files against
// the registries that need credentials: basic auth over TLS and bearer
// tokens (plain and TLS).
func TestRegistryLogin(t *testing.T) {
	testutil.SkipIfShort(t)
	for _, s := range startSetups(t) {
		if s.User == "" {
			continue
		}
		t.Run(s.Name, func(t *testing.T) { registryLogin(t, s) })
	}
}

func registryLogin(t *testing.T, s *testutil.RegistrySetup) {
	s.Push(t, "library/busybox:1", testutil.BusyboxImage(t))
	f := s.KilnFlags()
	src := s.Ref("library/busybox:1")
	// prepare gives a user the base image in its store (pulled with
	// --creds, so that no auth file is written) and a tag to push.
	prepare := func(t *testing.T, u *kilnUser, dst string) {
		t.Helper()
		u.ok(t, append(f, "pull", "--creds", s.User+":"+s.Password, src)...)
		u.ok(t, "tag", src, dst)
	}

	t.Run("wrong password", func(t *testing.T) {
		u := newKilnUser(t)
		wrong := testutil.RandomSecret()
		r := u.run(t, wrong+"\n", append(f, "login", "-u", s.User, "--password-stdin", s.Addr)...)
		if r.err == nil {
			t.Fatalf("login with a wrong password succeeded\n%s", r)
		}
		if !strings.Contains(r.stderr, s.Addr) {
			t.Errorf("the error does not name the registry %s\n%s", s.Addr, r)
		}
		if strings.Contains(r.stdout, "Login Succeeded") {
			t.Errorf("a failed login printed Login Succeeded\n%s", r)
		}
		if _, err := os.Stat(filepath.Join(u.home, ".docker", "config.json")); err == nil {
			t.Errorf("a failed login wrote ~/.docker/config.json")
		}
		u.noSecrets(t, wrong)
	})

	t.Run("login push logout", func(t *testing.T) {
		u := newKilnUser(t)
		dst := s.Ref("team/login:1")
		prepare(t, u, dst)
		r := u.fails(t, append(f, "push", dst)...)
		if !strings.Contains(r.stderr, s.Addr) || !hasWord(r.stderr, "unauthorized") {
			t.Errorf("push without login: stderr does not name %s and say unauthorized\n%s", s.Addr, r)
		}
		r = u.login(t, s)
		if !strings.Contains(r.stdout, "Login Succeeded") {
			t.Errorf("login did not print Login Succeeded\n%s", r)
		}
		cfg := filepath.Join(u.home, ".docker", "config.json")
		if got := readAuth(t, cfg, s.Addr); got != s.User+":"+s.Password {
			t.Errorf("%s holds %q for %s, want the user's credentials", cfg, got, s.Addr)
		}
		pushedDigest(t, u.ok(t, append(f, "push", dst)...), dst)
		s.VerifyBlobs(t, "team/login:1")

		u.ok(t, append(f, "logout", s.Addr)...)
		if got := readAuth(t, cfg, s.Addr); got != "" {
			t.Errorf("after logout %s still holds credentials for %s", cfg, s.Addr)
		}
		u.ok(t, "tag", src, s.Ref("team/login:2"))
		r = u.fails(t, append(f, "push", s.Ref("team/login:2"))...)
		if !strings.Contains(r.stderr, s.Addr) || !hasWord(r.stderr, "unauthorized") {
			t.Errorf("push after logout: stderr does not name %s and say unauthorized\n%s", s.Addr, r)
		}
		u.noSecrets(t, s.Password)
	})

	t.Run("password on the command line", func(t *testing.T) {
		u := newKilnUser(t)
		r := u.ok(t, append(f, "login", "-u", s.User, "-p", s.Password, s.Addr)...)
		if !strings.Contains(r.stderr, "--password-stdin") {
			t.Errorf("login -p does not warn to use --password-stdin\n%s", r)
		}
		u.noSecrets(t, s.Password)
	})

	t.Run("authfile", func(t *testing.T) {
		u := newKilnUser(t)
		af := filepath.Join(t.TempDir(), "auth.json")
		u.login(t, s, "--authfile", af)
		if got := readAuth(t, af, s.Addr); got != s.User+":"+s.Password {
			t.Errorf("--authfile %s holds %q for %s", af, got, s.Addr)
		}
		if _, err := os.Stat(filepath.Join(u.home, ".docker", "config.json")); err == nil {
			t.Errorf("login --authfile also wrote ~/.docker/config.json")
		}
		dst := s.Ref("team/authfile:1")
		prepare(t, u, dst)
		u.fails(t, append(f, "push", dst)...) // no --authfile: no credentials
		pushedDigest(t, u.ok(t, append(f, "--authfile", af, "push", dst)...), dst)

		// REGISTRY_AUTH_FILE is --authfile's environment variable.
		v := newKilnUser(t)
		v.setenv("REGISTRY_AUTH_FILE", af)
		dst = s.Ref("team/authfile:env")
		prepare(t, v, dst)
		pushedDigest(t, v.ok(t, append(f, "push", dst)...), dst)
		u.noSecrets(t, s.Password)
		v.noSecrets(t, s.Password)
	})

	t.Run("docker config", func(t *testing.T) {
		// A ~/.docker/config.json written by docker login.
		u := newKilnUser(t)
		writeDockerConfig(t, filepath.Join(u.home, ".docker"), s, s.Password)
		dst := s.Ref("team/dockercfg:1")
		prepare(t, u, dst)
		pushedDigest(t, u.ok(t, append(f, "push", dst)...), dst)

		// $DOCKER_CONFIG/config.json instead of the home directory's.
		v := newKilnUser(t)
		dc := t.TempDir()
		writeDockerConfig(t, dc, s, s.Password)
		v.setenv("DOCKER_CONFIG", dc)
		dst = s.Ref("team/dockercfg:2")
		prepare(t, v, dst)
		pushedDigest(t, v.ok(t, append(f, "push", dst)...), dst)
		// ... and login writes there.
		w := newKilnUser(t)
		wdc := t.TempDir()
		w.setenv("DOCKER_CONFIG", wdc)
		w.login(t, s)
		if got := readAuth(t, filepath.Join(wdc, "config.json"), s.Addr); got != s.User+":"+s.Password {
			t.Errorf("login with DOCKER_CONFIG wrote %q for %s", got, s.Addr)
		}

		// Wrong credentials in the file: refused, naming the registry.
		x := newKilnUser(t)
		wrong := testutil.RandomSecret()
		writeDockerConfig(t, filepath.Join(x.home, ".docker"), s, wrong)
		dst = s.Ref("team/dockercfg:3")
		prepare(t, x, dst)
		r := x.fails(t, append(f, "push", dst)...)
		if !strings.Contains(r.stderr, s.Addr) || !hasWord(r.stderr, "unauthorized") {
			t.Errorf("push with wrong stored credentials: stderr does not name %s and say unauthorized\n%s", s.Addr, r)
		}
		if src := filepath.Join(x.home, ".docker", "config.json"); !strings.Contains(r.stderr, src) {
			t.Errorf("push with wrong stored credentials: stderr does not name their source %s\n%s", src, r)
		}
		for _, k := range []*kilnUser{u, v, w, x} {
			k.noSecrets(t, s.Password, wrong)
		}
	})

	t.Run("containers auth.json", func(t *testing.T) {
		// podman's $XDG_RUNTIME_DIR/containers/auth.json: login writes it
		// when the directory exists, and push reads it.
		u := newKilnUser(t)
		rt := filepath.Join(u.home, "run")
		if err := os.MkdirAll(rt, 0o700); err != nil {
			t.Fatal(err)
		}
		u.setenv("XDG_RUNTIME_DIR", rt)
		u.login(t, s)
		af := filepath.Join(rt, "containers", "auth.json")
		if got := readAuth(t, af, s.Addr); got != s.User+":"+s.Password {
			t.Errorf("%s holds %q for %s", af, got, s.Addr)
		}
		dst := s.Ref("team/podman:1")
		prepare(t, u, dst)
		pushedDigest(t, u.ok(t, append(f, "push", dst)...), dst)
		u.noSecrets(t, s.Password)
	})

	if s.Token != nil {
		t.Run("token expiry", func(t *testing.T) { tokenExpiry(t, s, prepare) })
	}
}

// tokenExpiry: an expired token is replaced once; when every token the
// service issues is expired, the push fails naming the registry instead of
// looping. No token appears in any output.
func tokenExpiry(t *testing.T, s *testutil.RegistrySetup, prepare func(*testing.T, *kilnUser, string)) {
	f := s.KilnFlags()
	u := newKilnUser(t)
	u.login(t, s)
	dst := s.Ref("team/expiry:1")
	prepare(t, u, dst)

	before := len(s.Token.Requests())
	s.Token.ExpireNext(1)
	pushedDigest(t, u.ok(t, append(f, "push", dst)...), dst)
	reqs := s.Token.Requests()[before:]
	if len(reqs) < 2 || !reqs[0].Expired {
		t.Errorf("token requests of a push whose first token was expired: %+v; want an expired one and a fresh one", reqs)
	}
	s.VerifyBlobs(t, "team/expiry:1")

	u.ok(t, "tag", dst, s.Ref("team/expiry:2"))
	s.Token.ExpireNext(1 << 20)
	defer s.Token.ExpireNext(0)
	before = len(s.Token.Requests())
	r := u.fails(t, append(f, "push", s.Ref("team/expiry:2"))...)
	if !strings.Contains(r.stderr, s.Addr) || !hasWord(r.stderr, "unauthorized") {
		t.Errorf("push with only expired tokens: stderr does not name %s and say unauthorized\n%s", s.Addr, r)
	}
	if n := len(s.Token.Requests()) - before; n > 20 {
		t.Errorf("%d token requests for one push with expired tokens: want a bounded re-auth", n)
	}
	t.Logf("token requests of the failed push: %d", len(s.Token.Requests())-before)
	u.noSecrets(t, append(s.Token.Tokens(), s.Password)...)
}
