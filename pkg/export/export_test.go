package export

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kiln-build/kiln/pkg/imagearchive"
)

type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
}

func layerOf(t *testing.T, ents ...ent) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Size: int64(len(e.body))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage has two layers: the upper one deletes a file, makes a
// directory opaque, overrides a file and hardlinks to a lower file.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	lower := layerOf(t,
		ent{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0\n"},
		ent{name: "etc/gone", typ: tar.TypeReg, body: "bye"},
		ent{name: "opq/", typ: tar.TypeDir, mode: 0o700},
		ent{name: "opq/old", typ: tar.TypeReg, body: "old"},
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "bin/busybox", typ: tar.TypeReg, body: "BB", mode: 0o755},
		ent{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		ent{name: "usr/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "usr/lib", typ: tar.TypeSymlink, link: "../lib"},
	)
	upper := layerOf(t,
		ent{name: "etc/.wh.gone", typ: tar.TypeReg},
		ent{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0\napp:x:1000:1000\n", uid: 0},
		ent{name: "opq/", typ: tar.TypeDir, mode: 0o750, uid: 1000},
		ent{name: "opq/.wh..wh..opq", typ: tar.TypeReg},
		ent{name: "opq/new", typ: tar.TypeReg, body: "new", uid: 1000},
		ent{name: "bin/ls", typ: tar.TypeLink, link: "bin/busybox"},
	)
	img, err := mutate.AppendLayers(empty.Image, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func readTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		v := string(h.Typeflag) + " " + strings.TrimLeft(h.FileInfo().Mode().Perm().String(), "-")
		switch h.Typeflag {
		case tar.TypeReg:
			v += " " + string(body)
		case tar.TypeLink, tar.TypeSymlink:
			v += " -> " + h.Linkname
		}
		if h.Uid != 0 {
			v += " uid=1000"
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("%s written twice", h.Name)
		}
		out[h.Name] = v
	}
}

func TestWriteRootfsFlattens(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := WriteRootfs(tw, testImage(t), ""); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	got := readTar(t, &b)
	want := map[string]string{
		"etc/":        "5 rwxr-xr-x",
		"etc/passwd":  "0 rw-r--r-- root:x:0:0\napp:x:1000:1000\n",
		"opq/":        "5 rwxr-x--- uid=1000",
		"opq/new":     "0 rw-r--r-- new uid=1000",
		"bin/":        "5 rwxr-xr-x",
		"bin/busybox": "0 rwxr-xr-x BB",
		"bin/sh":      "1 rw-r--r-- -> bin/busybox",
		"bin/ls":      "1 rw-r--r-- -> bin/busybox",
		"usr/":        "5 rwxr-xr-x",
		"usr/lib":     "2 rw-r--r-- -> ../lib",
	}
	var diffs []string
	for k, v := range want {
		if got[k] != v {
			diffs = append(diffs, k+": got "+got[k]+", want "+v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "unexpected "+k+": "+got[k])
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("flattened tree differs:\n%s", strings.Join(diffs, "\n"))
	}
}

func TestTarAndLocalExporters(t *testing.T) {
	dir := t.TempDir()
	items := []imagearchive.Item{{Ref: "example.com/a:1", Artifact: testImage(t)}, {Ref: "example.com/a:2", Artifact: testImage(t)}}
	out := filepath.Join(dir, "rootfs.tar")
	if err := (Tar{Dest: out}).Export(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := readTar(t, f); got["opq/new"] == "" || got["etc/gone"] != "" {
		t.Errorf("tar output: %v", got)
	}
	var stdout bytes.Buffer
	if err := (Tar{Dest: Stdout, Stdout: &stdout}).Export(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if got := readTar(t, &stdout); got["bin/busybox"] == "" {
		t.Errorf("tar to stdout: %v", got)
	}

	local := filepath.Join(dir, "local")
	if err := (Local{Dest: local}).Export(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(local, "etc/passwd"))
	if err != nil || !strings.Contains(string(b), "app:x:1000") {
		t.Errorf("local etc/passwd = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(local, "opq/old")); !os.IsNotExist(err) {
		t.Errorf("opq/old survived the opaque directory: %v", err)
	}
	a, _ := os.Stat(filepath.Join(local, "bin/ls"))
	c, _ := os.Stat(filepath.Join(local, "bin/busybox"))
	if a == nil || c == nil || !os.SameFile(a, c) {
		t.Errorf("bin/ls is not a hardlink of bin/busybox")
	}
	if l, err := os.Readlink(filepath.Join(local, "usr/lib")); err != nil || l != "../lib" {
		t.Errorf("usr/lib -> %q, %v", l, err)
	}
}

func TestLocalMultiPlatform(t *testing.T) {
	img := testImage(t)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	dir := t.TempDir()
	if err := (Local{Dest: dir}).Export(context.Background(), []imagearchive.Item{{Artifact: idx}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"linux_amd64/bin/busybox", "linux_arm64_v8/bin/busybox"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if err := (Docker{Dest: filepath.Join(dir, "x.tar")}).Export(context.Background(), []imagearchive.Item{{Artifact: idx}}); err == nil || !strings.Contains(err.Error(), "one platform") {
		t.Errorf("docker archive of an index: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); !os.IsNotExist(err) {
		t.Errorf("a failed export left x.tar behind")
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in, desc, err string
		typ           Type
		names         []string
		push          bool
	}{
		{in: "type=oci,dest=/o/img.tar", typ: "oci", desc: "oci output to /o/img.tar"},
		{in: "type=docker,dest=d.tar", typ: "docker", desc: "docker output to d.tar"},
		{in: "type=docker", typ: "docker"},
		{in: "type=tar,dest=-", typ: "tar", desc: "tar output to stdout"},
		{in: "-", typ: "tar", desc: "tar output to stdout"},
		{in: "out/dir", typ: "local", desc: "local output to out/dir"},
		{in: "type=local,dest=out", typ: "local", desc: "local output to out"},
		{in: `type=image,"name=r.example/a:1,r.example/a:2",push=true`, typ: "image", names: []string{"r.example/a:1", "r.example/a:2"}, push: true},
		{in: "type=image,name=r.example/a:1", typ: "image", names: []string{"r.example/a:1"}},
		{in: "type=registry,name=r.example/a:1,compression=zstd", typ: "registry", names: []string{"r.example/a:1"}, push: true},
		{in: "type=s3", err: `unknown type "s3"`},
		{in: "dest=x", err: "missing type="},
		{in: "type=tar", err: "dest= is required"},
		{in: "type=local,dest=-", err: "use type=tar,dest=- for stdout"},
		{in: "type=registry", err: "needs name="},
		{in: "type=image,name=a,push=sometimes", err: "push=sometimes"},
		{in: "type=oci,dest=x,oci-mediatypes=false", err: "not supported"},
		{in: "type=tar,dest=x,compression=zstd", err: `unknown key "compression"`},
		{in: "type=registry,dest=x,name=a", err: "takes name=, not dest="},
		{in: "type=oci,dest=x,junk", err: `"junk" is not KEY=VALUE`},
	} {
		o, err := Parse(c.in, io.Discard)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "--output") {
				t.Errorf("%q: err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		desc := ""
		if o.Exporter != nil {
			desc = o.Exporter.String()
		}
		if o.Type != c.typ || desc != c.desc || strings.Join(o.Names, " ") != strings.Join(c.names, " ") || o.Push != c.push {
			t.Errorf("%q = %+v (%q), want type %s desc %q names %v push %v", c.in, o, desc, c.typ, c.desc, c.names, c.push)
		}
	}
}

func TestSaveFormats(t *testing.T) {
	for in, want := range map[string]Type{"docker-archive": TypeDocker, "oci-archive": TypeOCI} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"tar-archive", "local-archive", "docker", "oci", ""} {
		if _, err := ParseFormat(in); err == nil || !strings.Contains(err.Error(), "want docker-archive or oci-archive") {
			t.Errorf("ParseFormat(%q): %v", in, err)
		}
	}
	dir := t.TempDir()
	items := []imagearchive.Item{{Ref: "index.docker.io/library/app:1", Artifact: testImage(t)}}
	for typ, file := range map[Type]string{TypeOCI: "app.oci", TypeDocker: "app.docker"} {
		e, err := NewArchive(typ, filepath.Join(dir, file), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Export(context.Background(), items); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("%s: %v", typ, err) // a directory for an OCI layout
		}
		got := readTar(t, f)
		f.Close()
		switch typ {
		case TypeOCI:
			if !strings.Contains(got["index.json"], `"index.docker.io/library/app:1"`) {
				t.Errorf("oci archive's index.json: %q", got["index.json"])
			}
		case TypeDocker:
			if !strings.Contains(got["manifest.json"], `"app:1"`) {
				t.Errorf("docker archive's manifest.json has no short name: %q", got["manifest.json"])
			}
		}
	}
	if _, err := NewArchive(TypeTar, filepath.Join(dir, "x"), nil); err == nil {
		t.Errorf("tar writes no archive")
	}
}
