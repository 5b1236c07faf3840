package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

func buildSmall(t *testing.T, root string, tags ...string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY f /f\nWORKDIR /w\nENV A=1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "f"), []byte("content"), 0o644)
	args := []string{"build", "-q"}
	for _, tg := range tags {
		args = append(args, "-t", tg)
	}
	out, _, err := run(t, root, "", append(args, dir)...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func TestTagInspectRmi(t *testing.T) {
	root := t.TempDir()
	id := buildSmall(t, root, "app:1")
	if _, _, err := run(t, root, "", "tag", id[7:19], "app:2", "reg.example.com:5000/team/app:3"); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, root, "", "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		t.Fatal(err)
	}
	if out != "app:1\napp:2\nreg.example.com:5000/team/app:3\n" {
		t.Errorf("images: %q", out)
	}
	for filter, want := range map[string]string{
		"app":                             "app:1\napp:2\n",
		"app:2":                           "app:2\n",
		"docker.io/library/app:1":         "app:1\n",
		"reg.example.com:5000/team/app":   "reg.example.com:5000/team/app:3\n",
		"reg.example.com:5000/team/app:3": "reg.example.com:5000/team/app:3\n",
		"reg.example.com:5000/team/app:4": "",
		"reg.example.com:5000/team/*":     "reg.example.com:5000/team/app:3\n",
	} {
		out, _, err := run(t, root, "", "images", "--format", "{{.Repository}}:{{.Tag}}", filter)
		if err != nil || out != want {
			t.Errorf("images %s: %q (%v), want %q", filter, out, err, want)
		}
	}
	out, _, err = run(t, root, "", "inspect", "app:2")
	if err != nil {
		t.Fatal(err)
	}
	var ii []map[string]any
	if err := json.Unmarshal([]byte(out), &ii); err != nil || len(ii) != 1 {
		t.Fatalf("inspect output %q: %v", out, err)
	}
	if ii[0]["Id"] != id || ii[0]["Config"].(map[string]any)["WorkingDir"] != "/w" {
		t.Errorf("inspect: %v", ii[0])
	}
	if tags := ii[0]["RepoTags"].([]any); len(tags) != 3 {
		t.Errorf("RepoTags %v", tags)
	}
	out, _, _ = run(t, root, "", "inspect", "--format", "{{.Id}} {{.Config.WorkingDir}}", "app:1")
	if out != id+" /w\n" {
		t.Errorf("inspect --format: %q", out)
	}
	if _, _, err := run(t, root, "", "inspect", "nope:1"); err == nil || !strings.Contains(err.Error(), `image "nope:1" not found`) {
		t.Errorf("inspect of a missing image: %v", err)
	}

	// rmi by ID needs -f when the image has several names.
	_, errOut, err := run(t, root, "", "rmi", id)
	if err == nil || !strings.Contains(errOut, "has 3 names") {
		t.Errorf("rmi by ID without -f: %v %q", err, errOut)
	}
	out, _, err = run(t, root, "", "rmi", "app:1")
	if err != nil || out != "Untagged: app:1\n" {
		t.Errorf("rmi app:1: %q %v", out, err)
	}
	out, _, err = run(t, root, "", "rmi", "-f", id)
	if err != nil || !strings.Contains(out, "Untagged: app:2\n") || !strings.Contains(out, "Deleted: sha256:") {
		t.Errorf("rmi -f: %q %v", out, err)
	}
	if out, _, _ := run(t, root, "", "images", "-q"); out != "" {
		t.Errorf("images after rmi: %q", out)
	}
}

func TestSaveLoad(t *testing.T) {
	root := t.TempDir()
	id := buildSmall(t, root, "saved:1", "saved:2")
	dir := t.TempDir()
	for _, format := range []string{"docker-archive", "oci-archive"} {
		file := filepath.Join(dir, format+".tar")
		if _, _, err := run(t, root, "", "save", "--format", format, "-o", file, "saved:1"); err != nil {
			t.Fatalf("save %s: %v", format, err)
		}
		other := t.TempDir()
		out, _, err := run(t, other, "", "load", "-i", file)
		if err != nil {
			t.Fatalf("load %s: %v", format, err)
		}
		if out != "Loaded image: saved:1\n" {
			t.Errorf("load %s: %q", format, out)
		}
		out, _, _ = run(t, other, "", "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
		if out != "saved:1 "+id+"\n" {
			t.Errorf("images after load of %s: %q", format, out)
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, "docker-archive.tar"))
	// load decompresses what build - does: here xz.
	var xzed bytes.Buffer
	xw, _ := xz.NewWriter(&xzed)
	xw.Write(data)
	xw.Close()
	os.WriteFile(filepath.Join(dir, "docker-archive.tar.xz"), xzed.Bytes(), 0o644)
	if out, _, err := run(t, t.TempDir(), "", "load", "-i", filepath.Join(dir, "docker-archive.tar.xz")); err != nil || out != "Loaded image: saved:1\n" {
		t.Errorf("load of a .tar.xz: %q, %v", out, err)
	}
	// load from stdin too
	other := t.TempDir()
	if _, _, err := run(t, other, string(data), "load"); err != nil {
		t.Errorf("load from stdin: %v", err)
	}
	if _, _, err := run(t, root, "", "save", "-o", filepath.Join(dir, "x.tar"), "missing:1"); err == nil {
		t.Errorf("save of a missing image succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); err == nil {
		t.Errorf("a failed save left a file")
	}
	if _, _, err := run(t, root, "", "load", "-i", filepath.Join(dir, "nothing.tar")); err == nil {
		t.Errorf("load of a missing file succeeded")
	}
}
