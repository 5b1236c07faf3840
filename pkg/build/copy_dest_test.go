package build_test

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

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
)

// probeBase is a base image with what COPY destinations meet in real
// bases: directories (/usr/local/bin, /opt owned by app with mode 0750),
// a symlinked /bin, symlinks to directories and dangling ones, a file, and
// a second layer that whites out /gone and makes /op opaque.
func probeBase(t *testing.T) v1.Image {
	t.Helper()
	type ent struct {
		name, link, data string
		typ              byte
		mode             int64
		uid              int
	}
	mk := func(ents []ent) v1.Layer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range ents {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.uid, Linkname: e.link, Size: int64(len(e.data)), ModTime: time.Unix(1000, 0)}
			if h.Mode == 0 {
				h.Mode = 0o755
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, e.data)
		}
		tw.Close()
		data := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	d, f, s := byte(tar.TypeDir), byte(tar.TypeReg), byte(tar.TypeSymlink)
	l0 := mk([]ent{
		{name: "usr/", typ: d}, {name: "usr/bin/", typ: d}, {name: "usr/local/", typ: d}, {name: "usr/local/bin/", typ: d},
		{name: "bin", typ: s, link: "usr/bin"},
		{name: "etc/", typ: d}, {name: "etc/passwd", typ: f, mode: 0o644, data: "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
		{name: "etc/group", typ: f, mode: 0o644, data: "root:x:0:\napp:x:1000:\n"},
		{name: "opt/", typ: d, mode: 0o750, uid: 1000}, {name: "opt/keep", typ: f, mode: 0o644, data: "keep"},
		{name: "data/", typ: d}, {name: "data/link", typ: s, link: "/opt"}, {name: "data/rel", typ: s, link: "../opt"},
		{name: "file", typ: f, mode: 0o644, data: "file"},
		{name: "dangling", typ: s, link: "/nonexist/sub"},
		{name: "gone/", typ: d}, {name: "gone/x", typ: f, mode: 0o644},
		{name: "op/", typ: d}, {name: "op/old/", typ: d},
	})
	l1 := mk([]ent{
		{name: ".wh.gone", typ: f, mode: 0o644},
		{name: "op/", typ: d}, {name: "op/.wh..wh..opq", typ: f, mode: 0o644}, {name: "op/new", typ: f, mode: 0o644},
	})
	img, err := mutate.AppendLayers(empty.Image, l0, l1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var destContext = map[string]file{
	"a":         {content: "a\n"},
	"dir/sub/b": {content: "b\n"},
	"link":      {link: "a"},
	"x.tar":     {content: string(tarOf(0o750, 5))},
}

// tarOf makes a tar of the "./" directory (mode dirMode) and a file ./t,
// owned by id:id+1.
func tarOf(dirMode int64, id int) []byte {
	return tarEntries(
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: dirMode, Uid: id, Gid: id + 1},
		&tar.Header{Name: "./t", Typeflag: tar.TypeReg, Mode: 0o644, Uid: id, Gid: id + 1, Size: 2},
	)
}

// tarEntries makes a tar of headers; a regular file's content is Size
// bytes of "t\n" repeated.
func tarEntries(hs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		h.ModTime = time.Unix(1000, 0)
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, strings.Repeat("t\n", int(h.Size))[:h.Size])
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestCopyDestinationsLikeBuildKit checks COPY, ADD and WORKDIR against a
// base's directories, symlinks and files. Every expectation was taken
// from BuildKit (dockerd 20.10, DOCKER_BUILDKIT=1, `-o type=tar`) building
// the same Dockerfile on the same base.
func TestCopyDestinationsLikeBuildKit(t *testing.T) {
	e := newEnv(t)
	testutil.PushImage(t, e.reg+"/library/probe:1", probeBase(t))
	cases := []struct {
		name, df string
		want     []string // tree lines of the flattened image (prefixes)
		absent   []string
	}{
		{"into a base directory", "COPY a /usr/local/bin", []string{"/usr/local/bin dir 0755 0:0", "/usr/local/bin/a file 0644 0:0"}, nil},
		{"into a base directory keeps its owner and mode", "COPY a /opt", []string{"/opt dir 0750 1000:1000", "/opt/a file 0644 0:0", "/opt/keep file"}, nil},
		{"through a symlinked parent", "COPY a /bin/x", []string{"/bin symlink 0755 0:0 - - usr/bin", "/usr/bin/x file 0644 0:0"}, nil},
		{"a directory into a symlinked directory", "COPY dir /bin/", []string{"/bin symlink", "/usr/bin/sub dir 0755 0:0", "/usr/bin/sub/b file"}, nil},
		{"a directory onto a symlinked directory without a slash", "COPY dir /bin", []string{"/bin symlink", "/usr/bin/sub/b file"}, nil},
		{"onto a symlink to a directory", "COPY a /data/link", []string{"/data/link symlink", "/opt/a file 0644 0:0"}, nil},
		{"onto a dangling symlink", "COPY a /dangling", []string{"/dangling symlink", "/nonexist dir 0755 0:0", "/nonexist/sub file 0644 0:0"}, nil},
		{"--chown makes parents owned", "COPY --chown=app:app a /n1/n2/f", []string{"/n1 dir 0755 1000:1000", "/n1/n2 dir 0755 1000:1000", "/n1/n2/f file 0644 1000:1000"}, nil},
		{"--chown dir copy", "COPY --chown=1000:1000 dir /n3/n4/", []string{"/n3 dir 0755 1000:1000", "/n3/n4 dir 0755 1000:1000", "/n3/n4/sub dir 0755 1000:1000", "/n3/n4/sub/b file 0644 1000:1000"}, nil},
		{"--chown into an existing directory leaves it", "COPY --chown=app dir /usr/local/bin/", []string{"/usr/local/bin dir 0755 0:0", "/usr/local/bin/sub dir 0755 1000:1000"}, nil},
		{"WORKDIR under USER", "USER app\nWORKDIR /w1/w2", []string{"/w1 dir 0755 1000:1000", "/w1/w2 dir 0755 1000:1000"}, nil},
		{"WORKDIR through a symlink", "WORKDIR /bin/tools", []string{"/bin symlink", "/usr/bin/tools dir 0755 0:0"}, nil},
		{"a symlink source keeps its name", "COPY link /out/", []string{"/out dir 0755 0:0", "/out/link file 0644 0:0 2"}, []string{"/out/a"}},
		{"an unmatched wildcard among sources", "COPY a nomatch* /d/", []string{"/d dir 0755 0:0", "/d/a file"}, nil},
		{"nothing matched", "COPY nomatch* /d/", nil, []string{"/d "}},
		{"ADD keeps the archive's ./ out", "ADD x.tar /t/", []string{"/t dir 0755 0:0", "/t/t file 0644 5:6"}, nil},
		{"several sources onto a file path", "COPY a dir/sub/b /d", []string{"/d file 0644 0:0 2 "}, nil},
		{"below a whiteout", "COPY a /gone/y", []string{"/gone dir 0755 0:0", "/gone/y file"}, []string{"/gone/x"}},
		{"below an opaque directory", "COPY a /op/old/", []string{"/op/old dir 0755 0:0", "/op/old/a file", "/op/new file"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := e.mustBuild(t, "FROM {{REG}}/library/probe:1\n"+c.df+"\n", destContext)
			tree := testutil.ImageTree(t, img)
			for _, w := range c.want {
				if !hasLine(tree, w) {
					t.Errorf("no %q in\n%s", w, strings.Join(tree, "\n"))
				}
			}
			for _, a := range c.absent {
				if hasLine(tree, a) {
					t.Errorf("%q should not be there:\n%s", a, strings.Join(tree, "\n"))
				}
			}
		})
	}
}

func hasLine(tree []string, prefix string) bool {
	for _, l := range tree {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestCopyFromScratchAndStages(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, df string
		want     []string
		absent   []string
	}{
		// BuildKit makes the destination 0755, not the source's 0700.
		{"a directory's destination", "FROM scratch\nCOPY dir /dest/", []string{"/dest dir 0755 0:0", "/dest/sub dir 0700 0:0", "/dest/sub/b file 0644"}, nil},
		// A numeric --chmod also applies to the directories it creates
		// (BuildKit since fsutil 183e7fb, 2025).
		{"--chmod", "FROM scratch\nCOPY --chmod=750 dir /dest/", []string{"/dest dir 0750 0:0", "/dest/sub dir 0750 0:0", "/dest/sub/b file 0750"}, nil},
		{"a symlink from a stage keeps its name", "FROM scratch AS s\nADD l.tar /d/\nFROM scratch\nCOPY --from=s /d/link /out/", []string{"/out/link file 0644 0:0 2 "}, []string{"/out/target"}},
	}
	ctx := map[string]file{
		"dir/sub/":  {dir: true, mode: 0o700},
		"dir/sub/b": {content: "b\n"},
		"dir/":      {dir: true, mode: 0o700},
		"l.tar": {content: string(tarEntries(
			&tar.Header{Name: "target", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
			&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "target"},
		))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.build(t, c.df, ctx, func(o *build.Options) {})
			if err != nil {
				t.Fatal(err)
			}
			tree := testutil.ImageTree(t, resImage(t, res))
			for _, w := range c.want {
				if !hasLine(tree, w) {
					t.Errorf("no %q in\n%s", w, strings.Join(tree, "\n"))
				}
			}
			for _, a := range c.absent {
				if hasLine(tree, a) {
					t.Errorf("%q should not be there:\n%s", a, strings.Join(tree, "\n"))
				}
			}
		})
	}
}
