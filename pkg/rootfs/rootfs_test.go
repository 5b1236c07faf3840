package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

func TestChainIDs(t *testing.T) {
	a := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	b := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}
	got := rootfs.ChainIDs([]v1.Hash{a, b})
	sum := sha256.Sum256([]byte(a.String() + " " + b.String()))
	if got[0] != a || got[1].Hex != hex.EncodeToString(sum[:]) {
		t.Errorf("chain IDs %v", got)
	}
}

func TestOpenRefusesTheRoot(t *testing.T) {
	if _, err := rootfs.Open("/"); err == nil {
		t.Error("a store at / was accepted")
	}
	link := filepath.Join(t.TempDir(), "root")
	os.Symlink("/", link)
	if _, err := rootfs.Open(link); err == nil {
		t.Error("a store at a symlink to / was accepted")
	}
}

// entries reads a tar into "name type mode uid:gid size [link]" lines.
func entries(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		l := fmt.Sprintf("%s %c %04o %d:%d %d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size)
		if h.Linkname != "" {
			l += " " + h.Linkname
		}
		out = append(out, l)
	}
	return out
}

func TestWalkDiff(t *testing.T) {
	root := t.TempDir()
	w := func(p, content string) {
		t.Helper()
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("keep", "same")
	w("edit", "aaaa")
	w("mode", "m")
	w("gone", "g")
	w("dir/a", "a")
	w("dir/b", "b")
	w("replaced/x", "x")
	w("linked", "l")
	w("excluded/x", "x")
	os.Symlink("keep", filepath.Join(root, "sym"))
	// 1 TiB that is never read: an unchanged file is not even opened.
	big := filepath.Join(root, "huge")
	f, _ := os.Create(big)
	f.Truncate(1 << 40)
	f.Close()

	before, err := rootfs.TakeSnapshot(root, []string{"excluded"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := before["excluded/x"]; ok {
		t.Error("snapshot holds an excluded path")
	}
	// Same size and mtime, new content: the ctime tells.
	fi, _ := os.Stat(filepath.Join(root, "edit"))
	time.Sleep(10 * time.Millisecond)
	w("edit", "bbbb")
	os.Chtimes(filepath.Join(root, "edit"), fi.ModTime(), fi.ModTime())
	os.Chmod(filepath.Join(root, "mode"), 0o600)
	os.Remove(filepath.Join(root, "gone"))
	os.RemoveAll(filepath.Join(root, "dir"))
	os.RemoveAll(filepath.Join(root, "replaced"))
	w("replaced", "now a file")
	w("new/deep/file", "new")
	os.Link(filepath.Join(root, "linked"), filepath.Join(root, "new/link"))
	os.Remove(filepath.Join(root, "sym"))
	os.Symlink("edit", filepath.Join(root, "sym"))
	w("excluded/y", "y")

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	after, stats, err := rootfs.WriteWalkDiff(root, before, []string{"excluded"}, tw)
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	uid, gid := os.Getuid(), os.Getgid()
	own := fmt.Sprintf("%d:%d", uid, gid)
	want := []string{
		".wh.dir 0 0000 0:0 0",
		".wh.gone 0 0000 0:0 0",
		"edit 0 0644 " + own + " 4",
		"linked 0 0644 " + own + " 1",
		"mode 0 0600 " + own + " 1",
		"new/ 5 0755 " + own + " 0",
		"new/deep/ 5 0755 " + own + " 0",
		"new/deep/file 0 0644 " + own + " 3",
		"new/link 1 0644 " + own + " 0 linked",
		"replaced 0 0644 " + own + " 10",
		"sym 2 0777 " + own + " 0 edit",
	}
	got := entries(t, buf.Bytes())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("walk diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if stats.Bytes != 4+1+1+3+10 {
		t.Errorf("%d content bytes written, want only the changed files' 19", stats.Bytes)
	}
	if _, ok := after["huge"]; !ok {
		t.Error("the new snapshot lacks an unchanged file")
	}
	// Nothing changed since: an empty diff.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	if _, _, err := rootfs.WriteWalkDiff(root, after, []string{"excluded"}, tw); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if got := entries(t, buf.Bytes()); len(got) != 0 {
		t.Errorf("second diff without changes: %v", got)
	}
	// Snapshots survive a file.
	sf := filepath.Join(t.TempDir(), "snap")
	if err := rootfs.SaveSnapshot(sf, after); err != nil {
		t.Fatal(err)
	}
	back, err := rootfs.LoadSnapshot(sf)
	if err != nil || len(back) != len(after) || back["edit"] != after["edit"] {
		t.Errorf("snapshot round trip: %v", err)
	}
}

// sandboxStore gives a sandbox with overlay and a store removed through it.
func sandboxStore(t *testing.T) (*sandbox.Sandbox, *rootfs.Store) {
	t.Helper()
	sb, _, err := sandbox.New(context.Background(), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Mode() == sandbox.ModeNone || !sb.Overlay() {
		t.Skipf("no overlay sandbox here: %s", sb.Summary())
	}
	st, err := rootfs.Open(filepath.Join(t.TempDir(), "rootfs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Remove(context.Background(), st.Root()) })
	return sb, st
}

type tent struct {
	name, link, body string
	typ              byte
	mode             int64
	uid              int
}

func layer(t *testing.T, ents ...tent) rootfs.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), Uid: e.uid, Gid: e.uid, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	data := buf.Bytes()
	sum := sha256.Sum256(data)
	return rootfs.Layer{
		DiffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])},
		Open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		Name:   "test",
	}
}

func reg(name, body string) tent { return tent{name: name, typ: tar.TypeReg, mode: 0o644, body: body} }
func dir(name string) tent       { return tent{name: name, typ: tar.TypeDir, mode: 0o755} }

// TestPrepareOncePerMachine: layers are unpacked once; a second Prepare
// (another build, another Store value on the same directory) opens none.
func TestPrepareOncePerMachine(t *testing.T) {
	sb, st := sandboxStore(t)
	l1 := layer(t, dir("etc/"), reg("etc/a", "a"), reg("etc/b", "b"), tent{name: "srv/", typ: tar.TypeDir, mode: 0o755, uid: 33})
	l2 := layer(t, reg("etc/.wh.a", ""), tent{name: "etc/hard", typ: tar.TypeLink, link: "etc/b"}, reg("srv/new", "n"))
	dirs, err := st.Prepare(context.Background(), sb, []rootfs.Layer{l1, l2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Unpacked() != 2 || len(dirs) != 2 {
		t.Fatalf("unpacked %d, dirs %v", st.Unpacked(), dirs)
	}
	again, err := rootfs.Open(st.Root())
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	var counted []rootfs.Layer
	for _, l := range []rootfs.Layer{l1, l2} {
		l := l
		open := l.Open
		l.Open = func() (io.ReadCloser, error) { opened++; return open() }
		counted = append(counted, l)
	}
	dirs2, err := again.Prepare(context.Background(), sb, counted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opened != 0 || again.Unpacked() != 0 || strings.Join(dirs, " ") != strings.Join(dirs2, " ") {
		t.Errorf("second Prepare opened %d layers, unpacked %d", opened, again.Unpacked())
	}
	// Layer 2's directory is an overlay diff: the whiteout of etc/a, the
	// hardlink to a lower file (copied up with it), the new file.
	var st2 []string
	filepath.Walk(dirs[1], func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dirs[1] {
			rel, _ := filepath.Rel(dirs[1], p)
			kind := "f"
			switch {
			case fi.IsDir():
				kind = "d"
			case fi.Mode()&os.ModeCharDevice != 0:
				kind = "whiteout"
			}
			st2 = append(st2, rel+":"+kind)
		}
		return nil
	})
	sort.Strings(st2)
	want := "etc/a:whiteout etc/b:f etc/hard:f etc:d srv/new:f srv:d"
	if got := strings.Join(st2, " "); got != want {
		t.Errorf("layer 2 directory: %s\nwant %s", got, want)
	}
}

// TestPrepareRefusesHostileLayers: entries that climb out of the layer
// are refused naming the entry, and nothing is written outside the store.
func TestPrepareRefusesHostileLayers(t *testing.T) {
	sb, st := sandboxStore(t)
	outside := filepath.Join(filepath.Dir(st.Root()), "outside")
	os.MkdirAll(outside, 0o777)
	os.Chmod(outside, 0o777)
	base := layer(t, dir("etc/"), reg("etc/passwd", "root"))
	cases := []struct {
		name string
		l    rootfs.Layer
		want string
	}{
		{"dotdot", layer(t, reg("../../outside/pwned", "x")), "escapes"},
		{"symlink then write", layer(t, tent{name: "esc", typ: tar.TypeSymlink, link: outside}, reg("esc/pwned", "x")), "symlink"},
		{"hardlink escape", layer(t, tent{name: "h", typ: tar.TypeLink, link: "../../outside/x"}), "outside"},
		{"whiteout of dotdot", layer(t, reg("etc/.wh..", "")), "whiteout"},
	}
	for _, c := range cases {
		_, err := st.Prepare(context.Background(), sb, []rootfs.Layer{base, c.l}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
		ents, _ := os.ReadDir(outside)
		if len(ents) != 0 {
			t.Fatalf("%s: wrote outside the store: %v", c.name, ents)
		}
	}
	// The failed layers left no directory and no temp directory behind.
	left, _ := filepath.Glob(filepath.Join(st.Root(), sb.Key(), "tmp", "*"))
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestUpperDiff runs a step on an overlay and converts its upper
// directory: whiteouts, an opaque directory, new files.
func TestUpperDiff(t *testing.T) {
	sb, st := sandboxStore(t)
	base := layer(t, dir("etc/"), reg("etc/passwd", "root:x:0:0::/:/bin/sh\n"), reg("etc/group", "root:x:0:\n"),
		dir("home/"), reg("home/old", "o"), dir("bin/"))
	// No shell in the base layer: a busybox layer above it runs the step.
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox")
	}
	bb := layer(t, dir("bin/"), tent{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, body: mustRead(t, "/bin/busybox")})
	lowers, err := st.Prepare(context.Background(), sb, []rootfs.Layer{base, bb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := st.TempDir(sb.Key(), "step-")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := sb.Run(context.Background(), sandbox.Step{Lowers: lowers, TempDir: tmp, Env: []string{"PATH=/bin"},
		Args:   []string{"/bin/busybox", "sh", "-c", "busybox rm /etc/passwd && busybox rm -r /home && busybox mkdir /home && echo n > /home/new && busybox ln /home/new /home/link"},
		Stdout: &out, Stderr: &out})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %+v %s", err, res, out.String())
	}
	var buf bytes.Buffer
	if _, err := sb.UpperDiff(context.Background(), sandbox.UpperDir(tmp), nil, &buf); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries(t, buf.Bytes()) {
		f := strings.Fields(e)
		n := f[0] + " " + f[1]
		if len(f) > 5 {
			n += " " + f[5]
		}
		names = append(names, n)
	}
	want := "etc/ 5|etc/.wh.passwd 0|home/ 5|home/.wh..wh..opq 0|home/link 0|home/new 1 home/link"
	if got := strings.Join(names, "|"); got != want {
		t.Errorf("upper diff: %s\nwant %s", got, want)
	}
	if err := st.Commit(context.Background(), sb, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("c", 64)}, sandbox.UpperDir(tmp)); err != nil {
		t.Fatal(err)
	}
	if err := sb.Remove(context.Background(), tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPrepareChecksDiffID: a layer whose tar is not the one its diff ID
// names (a poisoned cache entry) is refused and leaves no directory under
// that diff ID's chain.
func TestPrepareChecksDiffID(t *testing.T) {
	sb, st := sandboxStore(t)
	good := layer(t, reg("etc/a", "a"))
	bad := layer(t, reg("etc/a", "evil"))
	bad.DiffID = good.DiffID
	_, err := st.Prepare(context.Background(), sb, []rootfs.Layer{bad}, nil)
	if err == nil || !strings.Contains(err.Error(), "not its diff ID") {
		t.Fatalf("mismatched layer: %v", err)
	}
	if st.Has(sb.Key(), good.DiffID) {
		t.Error("the mismatched layer was kept under the diff ID's chain")
	}
	if _, err := st.Prepare(context.Background(), sb, []rootfs.Layer{good}, nil); err != nil {
		t.Errorf("the right layer: %v", err)
	}
}
