package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kiln tag REPO@sha256:… names the manifest with that digest; a digest
// the store lacks is an error naming it.
func TestTagByDigest(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL a=b\n"), 0o644)
	if _, _, err := run(t, root, "", "build", "-q", "-t", "localhost:5000/app:1", dir); err != nil {
		t.Fatal(err)
	}
	dg, _, err := run(t, root, "", "images", "--digests", "--format", "{{.Digest}}", "localhost:5000/app")
	dg = strings.TrimSpace(dg)
	if err != nil || !strings.HasPrefix(dg, "sha256:") {
		t.Fatalf("digest %q: %v", dg, err)
	}
	if _, _, err := run(t, root, "", "tag", "localhost:5000/app@"+dg, "promoted:2"); err != nil {
		t.Fatalf("tag REPO@DIGEST: %v", err)
	}
	out, _, err := run(t, root, "", "images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}", "promoted")
	if err != nil || strings.TrimSpace(out) != "promoted:2 "+dg {
		t.Errorf("promoted: %q %v", out, err)
	}
	missing := "localhost:5000/app@sha256:" + strings.Repeat("0", 64)
	if _, _, err := run(t, root, "", "tag", missing, "x:1"); err == nil || !strings.Contains(err.Error(), "no manifest sha256:000") {
		t.Errorf("tag of a digest the store lacks: %v", err)
	}
}

// kiln login --get-login finds the login kiln wrote, wherever login wrote
// it (containers' auth.json under XDG_RUNTIME_DIR, --authfile) and however
// the registry is written (host:port, a URL).
func TestGetLoginSeesKilnLogins(t *testing.T) {
	home := isolateAuth(t)
	reg := startRegistry(t)
	requireBasic(reg, "ci-bot", "pw-Xk2")
	root := t.TempDir()
	xdg := filepath.Join(home, "run")
	os.MkdirAll(filepath.Join(xdg, "containers"), 0o700)
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	if _, errOut, err := run(t, root, "pw-Xk2", "login", "-u", "ci-bot", "--password-stdin", "http://"+reg.host); err != nil {
		t.Fatalf("login: %v\n%s", err, errOut)
	}
	if _, err := os.Stat(filepath.Join(xdg, "containers", "auth.json")); err != nil {
		t.Fatalf("login did not write containers' auth.json: %v", err)
	}
	for _, r := range []string{reg.host, "http://" + reg.host, "https://" + reg.host + "/v2/"} {
		if out, _, err := run(t, root, "", "login", "--get-login", r); err != nil || strings.TrimSpace(out) != "ci-bot" {
			t.Errorf("--get-login %s: %q %v", r, out, err)
		}
	}
	authfile := filepath.Join(t.TempDir(), "auth.json")
	if _, _, err := run(t, root, "pw-Xk2", "--authfile", authfile, "login", "-u", "ci-bot", "--password-stdin", reg.host); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(xdg, "containers", "auth.json"))
	if out, _, err := run(t, root, "", "--authfile", authfile, "login", "--get-login", reg.host); err != nil || strings.TrimSpace(out) != "ci-bot" {
		t.Errorf("--get-login --authfile: %q %v", out, err)
	}
	if _, _, err := run(t, root, "", "login", "--get-login", reg.host); err == nil || !strings.Contains(err.Error(), "not logged in to "+reg.host) {
		t.Errorf("--get-login without a login: %v", err)
	}
}

// kiln manifest inspect prints what the registry holds for a reference,
// an image's manifest or an index, without pulling anything.
func TestManifestInspect(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL a=b\n"), 0o644)
	img, idx := reg.host+"/team/app:1", reg.host+"/team/app:multi"
	if _, errOut, err := run(t, root, "", "build", "--push", "-t", img, dir); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if _, errOut, err := run(t, root, "", "build", "--push", "--platform", "linux/amd64,linux/arm64", "-t", idx, dir); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	fresh := t.TempDir()
	before := reg.downBytes.Load()
	out, _, err := run(t, fresh, "", "manifest", "inspect", img)
	if err != nil || !strings.Contains(out, `"mediaType": "application/vnd.oci.image.manifest.v1+json"`) || !strings.Contains(out, `"config": {`) {
		t.Errorf("manifest inspect IMAGE: %v\n%s", err, out)
	}
	out, _, err = run(t, fresh, "", "manifest", "inspect", "--insecure", idx)
	if err != nil || !strings.Contains(out, `"mediaType": "application/vnd.oci.image.index.v1+json"`) || strings.Count(out, `"architecture"`) != 2 {
		t.Errorf("manifest inspect INDEX: %v\n%s", err, out)
	}
	if reg.downBytes.Load() != before {
		t.Errorf("manifest inspect downloaded %d blob bytes", reg.downBytes.Load()-before)
	}
	if ls, _, _ := run(t, fresh, "", "images", "-q"); ls != "" {
		t.Errorf("manifest inspect stored images: %q", ls)
	}
	if _, _, err := run(t, fresh, "", "--retry", "0", "manifest", "inspect", reg.host+"/team/app:absent"); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("an absent tag: %v", err)
	}
	if _, _, err := run(t, fresh, "", "manifest", "inspekt", img); err == nil {
		t.Error("a misspelt subcommand was accepted")
	}
}
