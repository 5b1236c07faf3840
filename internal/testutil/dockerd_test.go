package testutil

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSharedDocker pulls the busybox test image from a loopback registry
// into the private daemon, runs a container as a non-root user without
// capabilities and with a volume, builds with BuildKit (a RUN step and a
// tar export), and saves and loads an image.
func TestSharedDocker(t *testing.T) {
	t.Parallel()
	SkipIfShort(t)
	d := SharedDocker(t)
	if d.Host == "" || !strings.HasPrefix(d.Host, "unix://") {
		t.Fatalf("Host = %q", d.Host)
	}
	reg := StartRegistry(t)
	ref := reg + "/library/busybox:dockerd-test"
	PushImage(t, ref, BusyboxImage(t))
	d.Docker(t, "pull", "-q", ref)

	vol := t.TempDir()
	if err := os.Chmod(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	out := d.Run(t, "--user", "1000:1000", "--cap-drop", "ALL", "-v", vol+":/vol", ref,
		"sh", "-c", "id -u; echo hi >/vol/f")
	if strings.TrimSpace(out) != "1000" {
		t.Errorf("id -u in the container = %q, want 1000", out)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "f")); err != nil || string(b) != "hi\n" {
		t.Errorf("volume file: %q, %v", b, err)
	}

	ctx := t.TempDir()
	df := "FROM " + ref + "\nRUN mkdir /made && echo ran >/made/f\nCOPY a /a\n"
	writeFiles(t, ctx, map[string]string{"Dockerfile": df, "a": "A"})
	dest := filepath.Join(t.TempDir(), "out.tar")
	if id := d.Build(t, ctx, "-o", "type=tar,dest="+dest); id != "" {
		t.Logf("build with -o gave an image ID %q", id)
	}
	got := tarFiles(t, dest)
	if got["made/f"] != "ran\n" || got["a"] != "A" {
		t.Errorf("tar export: made/f=%q a=%q", got["made/f"], got["a"])
	}

	id := d.Build(t, ctx, "-t", "kiln-dockerd-test:1")
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("image ID %q", id)
	}
	saved := d.Save(t, "kiln-dockerd-test:1")
	d.Docker(t, "rmi", "kiln-dockerd-test:1")
	if out := d.Load(t, saved); !strings.Contains(out, "kiln-dockerd-test:1") {
		t.Errorf("docker load said %q", out)
	}
	if out := d.Run(t, "kiln-dockerd-test:1", "cat", "/made/f", "/a"); out != "ran\nA" {
		t.Errorf("run of the loaded image printed %q", out)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func tarFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(h.Name, "./")] = string(b)
		}
	}
}
