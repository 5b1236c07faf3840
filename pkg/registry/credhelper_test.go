package registry

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
)

// installStoreHelper puts on PATH a docker-credential-NAME that keeps
// credentials in files under the returned directory, one per server URL,
// implementing get, store and erase as the real helpers do. A store whose
// Username is "echo-secret" fails and echoes its whole request (to check
// that kiln masks the secret).
func installStoreHelper(t *testing.T, name string) string {
	t.Helper()
	bin := t.TempDir()
	keep := t.TempDir()
	script := `#!/bin/sh
keep=` + keep + `
in=$(cat)
case "$1" in
  store)
    url=$(printf '%s' "$in" | sed -n 's/^{"ServerURL":"\([^"]*\)".*/\1/p')
    case "$in" in *'"Username":"echo-secret"'*) echo "cannot store $in"; exit 1 ;; esac
    printf '%s' "$in" > "$keep/$(printf '%s' "$url" | tr '/:' '__')" ;;
  get)
    f="$keep/$(printf '%s' "$in" | tr '/:' '__')"
    [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }
    cat "$f" ;;
  erase)
    f="$keep/$(printf '%s' "$in" | tr '/:' '__')"
    [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }
    rm "$f" ;;
  *) echo "unknown action $1"; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return keep
}

// kept reads what the helper keeps for serverURL ("" if nothing).
func kept(t *testing.T, keep, serverURL string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(keep, strings.NewReplacer("/", "_", ":", "_").Replace(serverURL)))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLoginCredentialHelper: with a credsStore (or a credHelpers entry) in
// the auth file, login hands the password to the helper as docker login
// does and leaves only an empty entry in the file; the keychain then gets
// it back from the helper; logout erases it from the helper.
func TestLoginCredentialHelper(t *testing.T) {
	home := isolateEnv(t)
	const user, pass = "erin", "helper-kept-Pa55"
	host := newRegistry(t, basicAuth(user, pass))
	o := fastOpts()
	store := installStoreHelper(t, "kilnstore")
	file := filepath.Join(home, ".docker", "config.json")
	// An old plaintext entry for the registry is replaced by the empty one.
	writeAuthFile(t, file, map[string]string{host: "old:old-pw", "other.example.com": "o:opw"}, map[string]any{"credsStore": "kilnstore"})

	stored, err := New(o).Login(context.Background(), host, user, pass)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if stored.Helper != "docker-credential-kilnstore" || stored.HelperFrom != "credsStore" || stored.File != file {
		t.Errorf("stored = %+v", stored)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), pass) || authOf(t, file, host) != "" {
		t.Errorf("the password is in %s: %s", file, raw)
	}
	m := readJSON(t, file)
	auths := m["auths"].(map[string]any)
	if e, ok := auths[host].(map[string]any); !ok || len(e) != 0 {
		t.Errorf("auths[%s] = %v, want {}", host, auths[host])
	}
	if authOf(t, file, "other.example.com") != "o:opw" || m["credsStore"] != "kilnstore" {
		t.Errorf("other settings were not kept: %s", raw)
	}
	var got struct{ ServerURL, Username, Secret string }
	if err := json.Unmarshal([]byte(kept(t, store, host)), &got); err != nil || got.ServerURL != host || got.Username != user || got.Secret != pass {
		t.Errorf("helper keeps %+v (%v)", got, err)
	}
	// The keychain reads it back through the helper, and it works.
	wantUser(t, o, host+"/app", user, pass)
	seedImage(t, host+"/a:1", &authn.Basic{Username: user, Password: pass}, 64, 1)
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/a:1", o)); err != nil {
		t.Fatalf("Fetch after login: %v", err)
	}

	if err := New(o).Logout(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	if s := kept(t, store, host); s != "" {
		t.Errorf("logout left %q in the helper", s)
	}
	if _, ok := readJSON(t, file)["auths"].(map[string]any)[host]; ok {
		t.Errorf("logout left the auths entry")
	}
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/a:1", o)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Fetch after logout: %v, want unauthorized", err)
	}
	if err := New(o).Logout(context.Background(), host); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("second logout: %v, want ErrNotLoggedIn", err)
	}

	// A credHelpers entry for the registry wins over credsStore.
	other := installStoreHelper(t, "kilnper")
	writeAuthFile(t, file, nil, map[string]any{"credsStore": "kilnstore", "credHelpers": map[string]string{host: "kilnper"}})
	stored, err = New(o).Login(context.Background(), host, user, pass)
	if err != nil || stored.Helper != "docker-credential-kilnper" || stored.HelperFrom != "credHelpers" {
		t.Fatalf("login with credHelpers: %+v, %v", stored, err)
	}
	if kept(t, other, host) == "" || kept(t, store, host) != "" {
		t.Errorf("credentials went to the wrong helper")
	}
}

// TestLoginCredentialHelperErrors: a helper that is not installed, a
// namespace key and a failing helper are clear errors that never show the
// password, and nothing is written in plain text instead.
func TestLoginCredentialHelperErrors(t *testing.T) {
	home := isolateEnv(t)
	const user, pass = "frank", "never-shown-pw"
	host := newRegistry(t, basicAuth(user, pass))
	o := fastOpts()
	file := filepath.Join(home, ".docker", "config.json")
	installStoreHelper(t, "kilnstore")

	writeAuthFile(t, file, nil, map[string]any{"credsStore": "absent"})
	_, err := New(o).Login(context.Background(), host, user, pass)
	if err == nil || !strings.Contains(err.Error(), "docker-credential-absent") || !strings.Contains(err.Error(), file) || strings.Contains(err.Error(), pass) {
		t.Errorf("helper not installed: %v", err)
	}
	if raw, _ := os.ReadFile(file); strings.Contains(string(raw), host) || strings.Contains(string(raw), "auth\"") {
		t.Errorf("a failed helper login wrote %s", raw)
	}

	writeAuthFile(t, file, nil, map[string]any{"credsStore": "kilnstore"})
	_, err = New(o).Login(context.Background(), host+"/team", user, pass)
	if err == nil || !strings.Contains(err.Error(), "per registry") || !strings.Contains(err.Error(), file) {
		t.Errorf("namespace with a helper: %v", err)
	}

	const echoUser = "echo-secret"
	host2 := newRegistry(t, basicAuth(echoUser, pass))
	_, err = New(o).Login(context.Background(), host2, echoUser, pass)
	if err == nil || !strings.Contains(err.Error(), "docker-credential-kilnstore store") || strings.Contains(err.Error(), pass) {
		t.Errorf("failing helper: %v", err)
	}
}
