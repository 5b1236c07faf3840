package registry

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// resolve returns the credential o's keychain finds for repo.
func resolve(t *testing.T, o Options, repo string) (*authn.AuthConfig, error) {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(o).Keychain().Resolve(r)
	if err != nil {
		return nil, err
	}
	if a == authn.Anonymous {
		return nil, nil
	}
	return a.Authorization()
}

func wantUser(t *testing.T, o Options, repo, user, pass string) {
	t.Helper()
	cfg, err := resolve(t, o, repo)
	if err != nil {
		t.Fatalf("%s: %v", repo, err)
	}
	if cfg == nil {
		t.Fatalf("%s: anonymous, want %s", repo, user)
	}
	if cfg.Username != user || cfg.Password != pass {
		t.Fatalf("%s: got %s:%s, want %s:%s", repo, cfg.Username, cfg.Password, user, pass)
	}
}

func TestKeychainOrder(t *testing.T) {
	home := isolateEnv(t)
	xdgRun := t.TempDir()
	dockerCfg := t.TempDir()
	explicit := filepath.Join(t.TempDir(), "explicit.json")
	t.Setenv("XDG_RUNTIME_DIR", xdgRun)
	t.Setenv("DOCKER_CONFIG", dockerCfg)

	files := []string{
		explicit,
		filepath.Join(xdgRun, "containers", "auth.json"),
		filepath.Join(home, ".config", "containers", "auth.json"),
		filepath.Join(dockerCfg, "config.json"),
		filepath.Join(home, ".docker", "config.json"),
	}
	users := []string{"explicit", "xdgrun", "xdgconfig", "dockerconfig", "homedocker"}
	for i, f := range files {
		writeAuthFile(t, f, map[string]string{"reg.example.com": users[i] + ":pw" + users[i]}, nil)
	}
	o := Options{AuthFile: explicit}
	if got := o.authFiles(); strings.Join(got, "\n") != strings.Join(files, "\n") {
		t.Fatalf("authFiles() = %q, want %q", got, files)
	}
	for i := range files {
		wantUser(t, o, "reg.example.com/app", users[i], "pw"+users[i])
		if err := os.Remove(files[i]); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := resolve(t, o, "reg.example.com/app")
	if err != nil || cfg != nil {
		t.Fatalf("no files left: got %+v, %v; want anonymous", cfg, err)
	}

	// $REGISTRY_AUTH_FILE stands in for AuthFile; AuthFile wins over it.
	env := filepath.Join(t.TempDir(), "env.json")
	writeAuthFile(t, env, map[string]string{"reg.example.com": "envuser:envpw"}, nil)
	t.Setenv("REGISTRY_AUTH_FILE", env)
	wantUser(t, Options{}, "reg.example.com/app", "envuser", "envpw")
	writeAuthFile(t, explicit, map[string]string{"reg.example.com": "flag:flagpw"}, nil)
	wantUser(t, Options{AuthFile: explicit}, "reg.example.com/app", "flag", "flagpw")

	// XDG_CONFIG_HOME replaces ~/.config.
	t.Setenv("REGISTRY_AUTH_FILE", "")
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	writeAuthFile(t, filepath.Join(cfgHome, "containers", "auth.json"), map[string]string{"reg.example.com": "cfghome:pw"}, nil)
	wantUser(t, Options{}, "reg.example.com/app", "cfghome", "pw")
}

func TestKeychainKeys(t *testing.T) {
	isolateEnv(t)
	file := filepath.Join(t.TempDir(), "auth.json")
	writeAuthFile(t, file, map[string]string{
		"reg.example.com":                    "host:h",
		"reg.example.com/team":               "team:t",
		"reg.example.com/team/app":           "app:a",
		"https://legacy.example.com/v1/":     "legacy:l",
		"https://both.example.com":           "legacyboth:lb",
		"both.example.com":                   "plainboth:pb",
		"https://index.docker.io/v1/":        "hub:hubpw",
		"port.example.com:5000":              "port:p",
		"docker.io/someorg":                  "huborg:o",
		"reg.example.com/teamless-prefix-no": "never:n",
	}, nil)
	o := Options{AuthFile: file}
	wantUser(t, o, "reg.example.com/team/app", "app", "a")
	wantUser(t, o, "reg.example.com/team/app/sub", "app", "a")
	wantUser(t, o, "reg.example.com/team/other", "team", "t")
	wantUser(t, o, "reg.example.com/teamother", "host", "h")
	wantUser(t, o, "reg.example.com/other", "host", "h")
	wantUser(t, o, "legacy.example.com/x", "legacy", "l")
	wantUser(t, o, "both.example.com/x", "plainboth", "pb")
	wantUser(t, o, "port.example.com:5000/x", "port", "p")
	for _, hub := range []string{"busybox", "docker.io/library/busybox", "index.docker.io/x/y", "registry-1.docker.io/library/busybox"} {
		wantUser(t, o, hub, "hub", "hubpw")
	}
	wantUser(t, o, "docker.io/someorg/app", "huborg", "o")
	// A full reference (not just a repository) as the target.
	a, err := New(o).Keychain().Resolve(name.MustParseReference("reg.example.com/team/app:1").(name.Tag))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := a.Authorization(); err != nil || cfg.Username != "app" {
		t.Errorf("reference target: %+v, %v; want the per-repository entry", cfg, err)
	}
	if cfg, err := resolve(t, o, "port.example.com/x"); err != nil || cfg != nil {
		t.Errorf("port.example.com without port: got %+v, %v; want anonymous", cfg, err)
	}
	if cfg, err := resolve(t, o, "other.example.com/x"); err != nil || cfg != nil {
		t.Errorf("other.example.com: got %+v, %v; want anonymous", cfg, err)
	}
}

func TestKeychainEntryForms(t *testing.T) {
	isolateEnv(t)
	file := filepath.Join(t.TempDir(), "auth.json")
	content := `{
		"auths": {
			"plain.example.com": {"username": "u1", "password": "p1"},
			"idtok.example.com": {"identitytoken": "refresh-me"},
			"regtok.example.com": {"registrytoken": "bearer-me"},
			"empty.example.com": {}
		},
		"HttpHeaders": {"X-Meta": "kept"}
	}`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{AuthFile: file}
	wantUser(t, o, "plain.example.com/x", "u1", "p1")
	cfg, err := resolve(t, o, "idtok.example.com/x")
	if err != nil || cfg == nil || cfg.IdentityToken != "refresh-me" {
		t.Errorf("identitytoken: got %+v, %v", cfg, err)
	}
	cfg, err = resolve(t, o, "regtok.example.com/x")
	if err != nil || cfg == nil || cfg.RegistryToken != "bearer-me" {
		t.Errorf("registrytoken: got %+v, %v", cfg, err)
	}
	if cfg, err := resolve(t, o, "empty.example.com/x"); err != nil || cfg != nil {
		t.Errorf("empty entry: got %+v, %v; want anonymous", cfg, err)
	}
}

func TestKeychainMalformed(t *testing.T) {
	isolateEnv(t)
	dir := t.TempDir()
	secret := "s3cr3t-do-not-print"
	cases := map[string]string{
		"notjson.json":   `{"auths": {"reg.example.com": {"auth": "` + secret,
		"badb64.json":    `{"auths": {"reg.example.com": {"auth": "!!!` + secret + `"}}}`,
		"nocolon.json":   `{"auths": {"reg.example.com": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(secret)) + `"}}}`,
		"wrongtype.json": `{"auths": ["` + secret + `"]}`,
	}
	for f, content := range cases {
		path := filepath.Join(dir, f)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := resolve(t, Options{AuthFile: path}, "reg.example.com/app")
		if err == nil {
			t.Errorf("%s: no error", f)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", f, err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(secret))) {
			t.Errorf("%s: error %q shows file content", f, err)
		}
	}
}

// installHelper puts a fake docker-credential-NAME on PATH that logs the
// server URLs it is asked for to the returned file.
func installHelper(t *testing.T, helper string) string {
	t.Helper()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
[ "$1" = get ] || { echo "unsupported $1"; exit 1; }
url=$(cat)
echo "$url" >> ` + logFile + `
case "$url" in
  helper.example.com) echo '{"ServerURL":"helper.example.com","Username":"helperuser","Secret":"helpersecret"}' ;;
  store.example.com) echo '{"ServerURL":"store.example.com","Username":"storeuser","Secret":"storesecret"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"<token>","Secret":"hub-identity"}' ;;
  broken.example.com) echo 'not json' ;;
  fails.example.com) echo 'the keyring is locked'; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+helper), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return logFile
}

func TestKeychainCredentialHelpers(t *testing.T) {
	home := isolateEnv(t)
	calls := installHelper(t, "test")
	dockerFile := filepath.Join(home, ".docker", "config.json")
	writeAuthFile(t, dockerFile, map[string]string{"plain.example.com": "fileuser:filepw"}, map[string]any{
		"credsStore":  "test",
		"credHelpers": map[string]string{"helper.example.com": "test", "nohelper.example.com": "absent"},
	})
	o := Options{}
	wantUser(t, o, "helper.example.com/app", "helperuser", "helpersecret")
	wantUser(t, o, "store.example.com/app", "storeuser", "storesecret")
	// An auths entry wins over credsStore.
	wantUser(t, o, "plain.example.com/app", "fileuser", "filepw")
	cfg, err := resolve(t, o, "busybox")
	if err != nil || cfg == nil || cfg.IdentityToken != "hub-identity" {
		t.Errorf("docker hub via credsStore: got %+v, %v; want identity token", cfg, err)
	}
	// "credentials not found" means anonymous.
	if cfg, err := resolve(t, o, "unknown.example.com/app"); err != nil || cfg != nil {
		t.Errorf("unknown registry: got %+v, %v; want anonymous", cfg, err)
	}
	// ... and lets a later file answer.
	podman := filepath.Join(home, ".config", "containers", "auth.json")
	later := filepath.Join(t.TempDir(), "config.json")
	t.Setenv("DOCKER_CONFIG", filepath.Dir(later))
	writeAuthFile(t, later, map[string]string{"unknown.example.com": "lateruser:laterpw"}, nil)
	wantUser(t, o, "unknown.example.com/app", "lateruser", "laterpw")
	_ = podman

	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"helper.example.com\n", "store.example.com\n", "https://index.docker.io/v1/\n", "unknown.example.com\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("helper was not asked for %q; calls:\n%s", want, got)
		}
	}
	if strings.Contains(got, "plain.example.com") {
		t.Errorf("credsStore asked for plain.example.com although auths had it; calls:\n%s", got)
	}

	// A credHelpers entry whose helper is missing is an error naming it.
	_, err = resolve(t, o, "nohelper.example.com/app")
	if err == nil || !strings.Contains(err.Error(), "docker-credential-absent") || !strings.Contains(err.Error(), dockerFile) {
		t.Errorf("missing helper: error %v, want one naming docker-credential-absent and %s", err, dockerFile)
	}
	// A helper failing otherwise is an error naming the helper.
	writeAuthFile(t, dockerFile, nil, map[string]any{"credHelpers": map[string]string{"fails.example.com": "test", "broken.example.com": "test"}})
	_, err = resolve(t, o, "fails.example.com/app")
	if err == nil || !strings.Contains(err.Error(), "docker-credential-test") || !strings.Contains(err.Error(), "keyring is locked") {
		t.Errorf("failing helper: error %v", err)
	}
	_, err = resolve(t, o, "broken.example.com/app")
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("broken helper: error %v", err)
	}
	// A credsStore whose helper is not installed (Docker Desktop's
	// "desktop" in a copied config) is skipped.
	writeAuthFile(t, dockerFile, nil, map[string]any{"credsStore": "desktop-absent"})
	if cfg, err := resolve(t, o, "store.example.com/app"); err != nil || cfg != nil {
		t.Errorf("absent credsStore: got %+v, %v; want anonymous", cfg, err)
	}
	// Helper names cannot be paths.
	writeAuthFile(t, dockerFile, nil, map[string]any{"credHelpers": map[string]string{"evil.example.com": "../../bin/sh"}})
	if _, err := resolve(t, o, "evil.example.com/app"); err == nil || !strings.Contains(err.Error(), "invalid credential helper name") {
		t.Errorf("path as helper: error %v", err)
	}
}

func TestKeychainContext(t *testing.T) {
	isolateEnv(t)
	kc := New(Options{}).Keychain()
	ck, ok := kc.(authn.ContextKeychain)
	if !ok {
		t.Fatalf("%T does not implement authn.ContextKeychain", kc)
	}
	a, err := ck.ResolveContext(context.Background(), name.MustParseReference("reg.example.com/x").Context())
	if err != nil || a != authn.Anonymous {
		t.Fatalf("ResolveContext with no files: %v, %v", a, err)
	}
}
