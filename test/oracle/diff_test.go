package oracle

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	old = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func layerOf(t *testing.T, hdrs ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.ModTime.IsZero() {
			h.ModTime = old
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Linkname))
			data := h.Linkname
			h.Linkname = ""
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, data)
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) tree {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := flatten(img)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// file makes a regular file header whose content is data (carried in
// Linkname until written).
func file(name, data string, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Linkname: data}
}

func TestFlattenWhiteoutsAndHardlinks(t *testing.T) {
	tr := imageOf(t,
		layerOf(t, file("a/x", "x", 0o644), file("a/y", "y", 0o644), &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
			file("d/in", "in", 0o644)),
		layerOf(t, file("a/.wh.x", "", 0), file("d/.wh..wh..opq", "", 0), file("d/new", "n", 0o600),
			&tar.Header{Name: "a/z", Typeflag: tar.TypeLink, Linkname: "a/y"}),
	)
	if _, ok := tr["/a/x"]; ok {
		t.Error("/a/x survived its whiteout")
	}
	if _, ok := tr["/d/in"]; ok {
		t.Error("/d/in survived the opaque directory")
	}
	if e := tr["/a/z"]; e == nil || e.group != "/a/y" || e.sha != tr["/a/y"].sha {
		t.Errorf("/a/z = %+v, want a hardlink of /a/y", e)
	}
	if e := tr["/a/y"]; e.group != "/a/y" {
		t.Errorf("/a/y group = %q", e.group)
	}
	if e := tr["/a"]; e == nil || !e.implicit {
		t.Errorf("/a = %+v, want an implicit directory", e)
	}
}

func TestDiffTrees(t *testing.T) {
	cutoff := now.Add(-time.Hour)
	docker := imageOf(t, layerOf(t,
		&tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		file("a/f", "same", 0o644),
		file("a/t", "time", 0o644),
		&tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "a", Mode: 0o777},
		&tar.Header{Name: "proc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		&tar.Header{Name: "mnt/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		file("owned", "o", 0o600),
	))
	k := []*tar.Header{
		file("a/f", "same", 0o644), // /a implicit: equals docker's 0755 root dir
		file("a/t", "time", 0o644),
		&tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "a", Mode: 0o755}, // symlink modes do not count
		&tar.Header{Name: "owned", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Linkname: "o"},
	}
	k[1].ModTime = now.Add(time.Hour) // docker's is old: compared
	kiln := imageOf(t, layerOf(t, k...))

	got := strings.Join(diffTrees(docker, kiln, cutoff, true, []string{"/mnt"}), "\n")
	for _, want := range []string{"/a/t:", "/owned:", "kiln:   file 0600 1000:0"} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"/a:", "/a/f", "/s", "/proc", "/mnt"} {
		if strings.Contains(got, not) {
			t.Errorf("diff has %q:\n%s", not, got)
		}
	}
	if d := diffTrees(docker, kiln, cutoff, false, []string{"/mnt"}); len(d) != 1 {
		t.Errorf("without times: %d differences, want 1 (/owned):\n%s", len(d), strings.Join(d, "\n"))
	}
}

func TestParseCase(t *testing.T) {
	c, err := parseCase("x", []byte("What it checks: a colon.\nargs: --target a\nsymlink: l -> f\nerror: both\n-- Dockerfile --\nFROM scratch\n-- oracle.Dockerfile --\nFROM scratch\n-- f --\nF\n-- http/u --\nU\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.summary != "What it checks: a colon." || len(c.args) != 2 || c.fail != "both" || len(c.directives) != 1 ||
		c.files["f"] != "F\n" || c.http["u"] != "U\n" || c.oracle != "FROM scratch\n" {
		t.Errorf("parsed %+v", c)
	}
	if _, err := parseCase("y", []byte("no dockerfile\n-- f --\n")); err == nil {
		t.Error("a case without a Dockerfile parsed")
	}
}

func TestKnownCovers(t *testing.T) {
	diff := []string{"tree:", "  /a: only kiln:   file", "  /b:", "      docker: dir", "      kiln:   file", "config:",
		"  docker: History: 3 entries", "  kiln:   History: 2 entries"}
	if !(knownFailure{}).covers(diff) {
		t.Error("an entry without only does not cover everything")
	}
	if (knownFailure{only: []string{"History:"}}).covers(diff) {
		t.Error("only History: covers tree differences")
	}
	if !(knownFailure{only: []string{"History:"}}).covers(diff[5:]) {
		t.Error("only History: does not cover the history lines")
	}
	if !(knownFailure{only: []string{"History:", "/a:", "/b:"}}).covers(diff) {
		t.Error("the paths' lines are not covered by their paths")
	}
}
