package cli

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// buildx's output forms: type=registry pushes its names, type=tar to
// stdout replaces the image ID there, --metadata-file has buildx's keys.
func TestBuildxOutputs(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY a.txt /app/a.txt\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644)
	meta := filepath.Join(t.TempDir(), "meta.json")
	name := reg.host + "/team/app:1"
	out, _, err := run(t, root, "", "build", "--output", "type=registry,name="+name, "--metadata-file", meta, dir)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	b, err := os.ReadFile(meta)
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("metadata file %q: %v", b, err)
	}
	if m["containerimage.config.digest"] != strings.TrimSpace(out) {
		t.Errorf("containerimage.config.digest %v, build printed %q", m["containerimage.config.digest"], out)
	}
	if got := reg.remoteDigest(t, "team/app:1"); got != m["containerimage.digest"] {
		t.Errorf("pushed digest %s, metadata says %v", got, m["containerimage.digest"])
	}
	if m["image.name"] != name {
		t.Errorf("image.name %v, want %s", m["image.name"], name)
	}

	out, _, err = run(t, root, "", "build", "-o", "-", dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(strings.NewReader(out))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stdout is not a tar: %v", err)
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "app/ app/a.txt" {
		t.Errorf("tar on stdout holds %v, want app/ app/a.txt only (no image ID)", names)
	}
	local := t.TempDir()
	if _, _, err := run(t, root, "", "build", "--load", "-o", "type=local,dest="+local, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(local, "app/a.txt")); err != nil || string(b) != "hello" {
		t.Errorf("local output app/a.txt = %q, %v", b, err)
	}
}
