package e2e

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil"
)

// squashDockerfile's RUN steps make, overwrite and delete files and
// directories of their own and of the base, remake a deleted directory of
// the base (whose other files must stay hidden), and make hard links whose
// first name a later step overwrites or deletes.
const squashDockerfile = `RUN mkdir -p /d/sub /keep && echo 1 > /d/sub/f && echo k > /keep/k && echo a > /a && ln /a /b && ln /a /c && echo z > /z && ln /z /y && chmod 600 /keep/k && touch -d '2001-02-03 04:05:06' /keep/k && (chown 1000:1000 /keep/k 2>/dev/null || true)
RUN echo a2 > /a && rm -rf /d /z /bin/cat && mkdir /e && echo e > /e/1
RUN rm -rf /e /usr/sbin && mkdir /e /usr/sbin && echo 2 > /e/2 && echo only > /usr/sbin/only && mkdir -p /d/new && echo n > /d/new/f
COPY ctx.txt /copied
LABEL squashed=maybe
`

// TestRunBuildSquash: --squash makes the layers the build added one layer
// over the base's, --squash-all makes the whole image one layer, as
// podman 4.3's do (history: an entry per instruction, all empty but the
// last; --squash-all drops the base's entries), and the flattened
// filesystem (owners, modes, mtimes, hard links) is the unsquashed one's.
// The squashing builds take every step from the step cache.
func TestRunBuildSquash(t *testing.T) {
	testutil.SkipIfShort(t)
	requireRun(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	dir := t.TempDir()
	df := "FROM " + reg + "/library/busybox\n" + squashDockerfile
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ctx.txt"), []byte("from the context\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := runStore(t)
	build := func(flags ...string) v1.Image {
		out := t.TempDir()
		r := kiln(t, append(append([]string{"--root", root, "build"}, flags...), "-o", "type=oci,dest="+out, dir)...)
		if len(flags) > 0 && strings.Count(r.stderr, "CACHED") < 4 {
			t.Errorf("%v: the steps were not all taken from the cache:\n%s", flags, r.stderr)
		}
		return ociImage(t, out)
	}
	plain := build()
	want := flatImage(t, plain)
	for _, p := range []string{"a", "b", "y", "bin/cat", "d/sub/f", "e/1", "usr/sbin/only", "usr/sbin/ls"} {
		_, ok := want[p]
		if ok != (p == "a" || p == "b" || p == "y" || p == "usr/sbin/only") {
			t.Fatalf("the unsquashed image's /%s: %q (the Dockerfile did not do what the test expects)", p, want[p])
		}
	}
	pcfg, _ := plain.ConfigFile()
	for _, c := range []struct {
		flag       string
		layers     int
		history    int // entries; the last is the only non-empty one of the build's
		baseLayers int
	}{
		{"--squash", 2, len(pcfg.History), 1},
		{"--squash-all", 1, len(pcfg.History) - 1, 0},
	} {
		img := build(c.flag)
		diffFlatImages(t, c.flag, want, flatImage(t, img))
		layers, _ := img.Layers()
		cfg, _ := img.ConfigFile()
		if len(layers) != c.layers || len(cfg.RootFS.DiffIDs) != c.layers {
			t.Errorf("%s: %d layers, %d diff IDs, want %d", c.flag, len(layers), len(cfg.RootFS.DiffIDs), c.layers)
		}
		var empty []bool
		for _, h := range cfg.History {
			empty = append(empty, h.EmptyLayer)
		}
		if len(cfg.History) != c.history || empty[len(empty)-1] || slices.Index(empty[c.baseLayers:], false) != len(empty)-1-c.baseLayers {
			t.Errorf("%s: history empty_layer flags %v, want %d entries, the last the only non-empty one after the base's", c.flag, empty, c.history)
		}
		for i, h := range cfg.History[c.baseLayers:] {
			if want := pcfg.History[len(pcfg.History)-len(cfg.History)+c.baseLayers+i].CreatedBy; h.CreatedBy != want {
				t.Errorf("%s: history %d is %q, want %q", c.flag, i, h.CreatedBy, want)
			}
		}
		if c.baseLayers > 0 {
			pl, _ := plain.Layers()
			bd, _ := pl[0].Digest()
			if d, _ := layers[0].Digest(); d != bd {
				t.Errorf("%s: the base layer changed: %s, want %s", c.flag, d, bd)
			}
		}
		if cfg.Config.Labels["squashed"] != "maybe" {
			t.Errorf("%s: config lost its label: %v", c.flag, cfg.Config.Labels)
		}
	}
}

// TestBuildSquashPushMultiPlatform: --squash with --push and two
// platforms pushes, for each platform, an image of one layer (FROM
// scratch: every layer is the build's).
func TestBuildSquashPushMultiPlatform(t *testing.T) {
	testutil.SkipIfShort(t)
	reg := testutil.StartRegistry(t)
	dir := t.TempDir()
	df := "FROM scratch\nARG TARGETARCH\nCOPY a /a\nCOPY b /b-$TARGETARCH\nCOPY a /b-$TARGETARCH\n"
	for n, body := range map[string]string{"Dockerfile": df, "a": "a\n", "b": "b\n"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref := reg + "/squash/multi:1"
	kiln(t, "--root", t.TempDir(), "build", "--squash", "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push", dir)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			continue // attestation manifests
		}
		n++
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		got := flatImage(t, img)
		if len(layers) != 1 || len(got) != 2 || !strings.Contains(got["b-"+d.Platform.Architecture], fmt.Sprintf("%x", sha256.Sum256([]byte("a\n")))) {
			t.Errorf("%s: %d layers, files %v", d.Platform.Architecture, len(layers), got)
		}
	}
	if n != 2 {
		t.Errorf("the index has %d images, want 2", n)
	}
}

// flatImage is img's filesystem as a container sees it: each path with its
// type, mode, owners, mtime, xattrs, content or target, and the other
// names of its inode (hard links).
func flatImage(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	type entry struct{ desc string }
	m := map[string]*entry{}
	remove := func(p string, self bool) {
		for k := range m {
			if (self && k == p) || strings.HasPrefix(k, p+"/") || (p == "" && k != "") {
				delete(m, k)
			}
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		type add struct {
			h   *tar.Header
			sum string
		}
		var adds []add
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			p := strings.Trim(path.Clean("/"+h.Name), "/")
			dir, base := path.Split(p)
			dir = strings.TrimSuffix(dir, "/")
			switch {
			case base == ".wh..wh..opq":
				remove(dir, false)
			case strings.HasPrefix(base, ".wh."):
				remove(strings.TrimPrefix(path.Join(dir, base[4:]), "/"), true)
			default:
				s := sha256.New()
				if _, err := io.Copy(s, tr); err != nil {
					t.Fatal(err)
				}
				h.Name = p
				adds = append(adds, add{h, fmt.Sprintf("%x", s.Sum(nil))})
			}
		}
		rc.Close()
		for _, a := range adds {
			h, p := a.h, a.h.Name
			if p == "" {
				continue
			}
			if old, ok := m[p]; ok && strings.HasPrefix(old.desc, "dir") && h.Typeflag != tar.TypeDir {
				remove(p, false)
			}
			var xattrs []string
			for _, k := range slices.Sorted(maps.Keys(h.PAXRecords)) {
				if strings.HasPrefix(k, "SCHILY.xattr.") {
					xattrs = append(xattrs, k+"="+h.PAXRecords[k])
				}
			}
			desc := fmt.Sprintf("%c %04o %d:%d %d %v", h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid, h.ModTime.Unix(), xattrs)
			switch h.Typeflag {
			case tar.TypeLink:
				target := m[strings.Trim(path.Clean("/"+h.Linkname), "/")]
				if target == nil {
					t.Fatalf("layer %d: hard link %s to nothing (%s)", i, p, h.Linkname)
				}
				m[p] = target
				continue
			case tar.TypeReg:
				desc += " " + a.sum
			case tar.TypeSymlink:
				desc += " " + h.Linkname
			case tar.TypeDir:
				if old, ok := m[p]; ok && strings.HasPrefix(old.desc, "5") {
					old.desc = desc
					continue
				}
			}
			m[p] = &entry{desc: desc}
		}
	}
	names := map[*entry][]string{}
	for p, e := range m {
		names[e] = append(names[e], p)
	}
	out := map[string]string{}
	for p, e := range m {
		out[p] = e.desc + " links " + strings.Join(slices.Sorted(slices.Values(names[e])), ",")
	}
	return out
}

func diffFlatImages(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if got[p] != want[p] {
			t.Errorf("%s: /%s is %q, want %q (unsquashed)", what, p, got[p], want[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: /%s is there (%q), not in the unsquashed image", what, p, got[p])
		}
	}
}
