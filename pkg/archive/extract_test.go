//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type skipLog struct{ entries []string }

func (s *skipLog) opts(chown bool) ExtractOptions {
	return ExtractOptions{Chown: chown, OnSkip: func(name, reason string) {
		s.entries = append(s.entries, name+": "+reason)
	}}
}

func (s *skipLog) has(name string) bool {
	return slices.ContainsFunc(s.entries, func(e string) bool { return strings.HasPrefix(e, name+": ") })
}

func lstat(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func readString(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

var capValue = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" // cap_net_bind_service=ep

func TestExtract(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("walkOnly=%v", walk), func(t *testing.T) {
			defer func(old bool) { walkOnly = old }(walkOnly)
			walkOnly = walk
			testExtract(t)
		})
	}
}

func testExtract(t *testing.T) {
	root := t.TempDir()
	// ro/ stays read-only: a non-root test could not remove its files.
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "ro"), 0o755) })
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	longName := "deep/" + strings.Repeat("long-component-name/", 8) + "file"
	layer0 := mkTar(t,
		tent{name: "./", typ: tar.TypeDir, mode: 0o755, mtime: old},
		tent{name: "bin/", typ: tar.TypeDir, mode: 0o755, mtime: old},
		tent{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "setuid", uid: 1000, gid: 1000, mtime: old},
		tent{name: "bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", pax: map[string]string{
			"SCHILY.xattr.security.capability": capValue, "SCHILY.xattr.user.note": "hello"}},
		tent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777, mtime: old},
		tent{name: "ro/", typ: tar.TypeDir, mode: 0o555, mtime: old},
		tent{name: "ro/inside", typ: tar.TypeReg, mode: 0o444, body: "in a read-only dir"},
		tent{name: "var/spool/", typ: tar.TypeDir, mode: 0o755},
		symlink("var/mail", "spool/mail"),
		symlink("var/spool/mail", "../mail"),
		symlink("abs", "/etc/passwd"),
		symlink("dangling", "does/not/exist"),
		hardlink("bin/su-link", "bin/su"),
		tent{name: longName, typ: tar.TypeReg, mode: 0o600, body: "long"},
		tent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		tent{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		tent{name: "owned", typ: tar.TypeReg, mode: 0o640, uid: 123, gid: 456, body: "o"},
		tent{name: "lowner", typ: tar.TypeSymlink, link: "owned", uid: 77, gid: 88},
		tent{name: "/absolute/name", typ: tar.TypeReg, mode: 0o644, body: "abs"},
	)
	var skips skipLog
	if err := Extract(bytes.NewReader(layer0), root, skips.opts(os.Getuid() == 0)); err != nil {
		t.Fatal(err)
	}
	j := func(p string) string { return filepath.Join(root, p) }

	if st := lstat(t, j("bin/su")); st.Mode&0o7777 != 0o4755 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("bin/su mode %o", st.Mode)
	}
	if st := lstat(t, j("tmp")); st.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o", st.Mode)
	}
	if st := lstat(t, j("ro")); st.Mode&0o7777 != 0o555 {
		t.Errorf("ro mode %o", st.Mode)
	}
	if readString(t, j("ro/inside")) != "in a read-only dir" {
		t.Error("ro/inside content")
	}
	if st := lstat(t, j("var")); st.Mode&0o7777 != 0o755 {
		t.Errorf("implied dir var mode %o", st.Mode)
	}
	for p, target := range map[string]string{"var/mail": "spool/mail", "var/spool/mail": "../mail", "abs": "/etc/passwd", "dangling": "does/not/exist"} {
		if got, err := os.Readlink(j(p)); err != nil || got != target {
			t.Errorf("symlink %s -> %q, %v; want %q", p, got, err, target)
		}
	}
	su, link := lstat(t, j("bin/su")), lstat(t, j("bin/su-link"))
	if su.Ino != link.Ino || su.Nlink != 2 {
		t.Errorf("hardlink: inodes %d %d, nlink %d", su.Ino, link.Ino, su.Nlink)
	}
	if readString(t, j(longName)) != "long" {
		t.Error("long name content")
	}
	if st := lstat(t, j("run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o600 {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if st, err := os.Lstat(j("dev/null")); err == nil {
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode()&fs.ModeCharDevice == 0 || unix.Major(sys.Rdev) != 1 || unix.Minor(sys.Rdev) != 3 {
			t.Errorf("dev/null: mode %v rdev %d:%d", st.Mode(), unix.Major(sys.Rdev), unix.Minor(sys.Rdev))
		}
	} else if !skips.has("dev/null") {
		t.Errorf("dev/null neither created nor reported skipped: %v", err)
	}
	if readString(t, j("absolute/name")) != "abs" {
		t.Error("absolute name not extracted relative to the root")
	}
	// Extended attributes: set, or reported as skipped.
	for _, x := range []struct{ name, value string }{{"user.note", "hello"}, {"security.capability", capValue}} {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(j("bin/ping"), x.name, buf)
		if err != nil {
			if !skips.has("bin/ping") {
				t.Errorf("xattr %s neither set nor reported: %v", x.name, err)
			}
			continue
		}
		if string(buf[:n]) != x.value {
			t.Errorf("xattr %s = %q, want %q", x.name, buf[:n], x.value)
		}
	}
	// Times: files and directories (set after their contents).
	for _, p := range []string{"bin/su", "bin", "tmp", "ro", ""} {
		if st := lstat(t, j(p)); st.Mtim.Sec != old.Unix() {
			t.Errorf("%q mtime %d, want %d", p, st.Mtim.Sec, old.Unix())
		}
	}
	if st := lstat(t, j("dangling")); st.Mtim.Sec != testTime.Unix() {
		t.Errorf("symlink mtime %d, want %d", st.Mtim.Sec, testTime.Unix())
	}
	if os.Getuid() == 0 {
		if st := lstat(t, j("owned")); st.Uid != 123 || st.Gid != 456 {
			t.Errorf("owned: %d:%d", st.Uid, st.Gid)
		}
		if st := lstat(t, j("lowner")); st.Uid != 77 || st.Gid != 88 {
			t.Errorf("symlink owner %d:%d (lchown)", st.Uid, st.Gid)
		}
		if st := lstat(t, j("bin/su")); st.Uid != 1000 || st.Mode&0o4000 == 0 {
			t.Errorf("bin/su: uid %d mode %o: setuid must survive chown", st.Uid, st.Mode)
		}
	}

	// Layer 1: whiteouts, opaque dirs, replacements, hardlink to a lower file.
	layer1 := mkTar(t,
		whiteout("bin/.wh.ping"),
		file("ro/new", "new in ro"),
		whiteout("ro/.wh.inside"),
		file("var/spool/kept", "same layer"),
		whiteout("var/spool/.wh..wh..opq"),
		hardlink("su-again", "bin/su"),
		file("tmp", "tmp is now a file"),
		dir("owned/"), file("owned/child", "c"),
		file("abs", "abs is now a file, not written through the link"),
		whiteout(".wh.dangling"),
		whiteout("nowhere/.wh.x"),
		whiteout(".wh..wh.plnk"),
	)
	skips = skipLog{}
	if err := Extract(bytes.NewReader(layer1), root, skips.opts(false)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"bin/ping": false, "bin/su": true, "ro/inside": false, "ro/new": true,
		"var/spool/mail": false, "var/spool/kept": true, "var/mail": true, "dangling": false,
		"owned/child": true,
	} {
		if exists(j(p)) != want {
			t.Errorf("%s exists = %v, want %v", p, !want, want)
		}
	}
	if st := lstat(t, j("ro")); st.Mode&0o7777 != 0o555 {
		t.Errorf("ro mode %o after adding to it", st.Mode)
	}
	if lstat(t, j("su-again")).Ino != su.Ino {
		t.Error("hardlink to a file of an earlier layer is not the same inode")
	}
	if st := lstat(t, j("tmp")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("tmp not replaced by a file: %o", st.Mode)
	}
	if st := lstat(t, j("abs")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("abs not replaced by a file: %o", st.Mode)
	}
}

// snapshot lists every path under dir with its type and content.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link:" + target
		case d.IsDir():
			out[rel] = "dir"
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			out[rel] = "file:" + string(b)
		default: // never open fifos and devices
			out[rel] = "special:" + d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sentinel makes base/root (the extraction target) and base/outside with
// files that nothing may touch, and returns base.
func sentinel(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"root", "outside/sub"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{"outside/secret": "original", "outside/sub/deep": "deep"} {
		if err := os.WriteFile(filepath.Join(base, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

func checkSentinel(t testing.TB, base string, want map[string]string) {
	t.Helper()
	got := snapshot(t, base)
	for p, v := range got {
		if p == "root" || strings.HasPrefix(p, "root/") {
			continue
		}
		if want[p] != v {
			t.Errorf("outside the root: %s = %q, want %q", p, v, want[p])
		}
	}
	for p := range want {
		if _, ok := got[p]; !ok {
			t.Errorf("outside the root: %s was removed", p)
		}
	}
}

func TestExtractHostile(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("walkOnly=%v", walk), func(t *testing.T) {
			defer func(old bool) { walkOnly = old }(walkOnly)
			walkOnly = walk
			testExtractHostile(t)
		})
	}
}

func testExtractHostile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries func(base string) []tent
		errWant string // "" if the layer must extract without error
		check   func(t *testing.T, root string)
	}{
		{"dotdot", func(string) []tent { return []tent{file("../outside/secret", "pwned")} }, "../outside/secret", nil},
		{"dotdot inside", func(string) []tent { return []tent{file("a/../../outside/secret", "pwned")} }, "a/../../outside/secret", nil},
		{"relative symlink then write through", func(string) []tent {
			return []tent{symlink("evil", "../outside"), file("evil/secret", "pwned")}
		}, "evil/secret", nil},
		{"absolute symlink then write through", func(base string) []tent {
			return []tent{symlink("evil", filepath.Join(base, "outside")), file("evil/secret", "pwned")}
		}, "symlink", nil},
		{"root symlink then deep write", func(base string) []tent {
			return []tent{symlink("evil", "/"), file("evil"+base+"/outside/sub/deep", "pwned")}
		}, "symlink", nil},
		{"symlink then mkdir through", func(string) []tent {
			return []tent{symlink("evil", "../outside"), dir("evil/newdir/")}
		}, "evil/newdir/", nil},
		{"symlink then hardlink through", func(string) []tent {
			return []tent{symlink("evil", "../outside"), file("x", "x"), hardlink("evil/h", "x")}
		}, "evil/h", nil},
		{"hardlink escape", func(string) []tent { return []tent{hardlink("h", "../outside/secret")} }, "../outside/secret", nil},
		{"hardlink through symlink", func(string) []tent {
			return []tent{symlink("evil", "../outside"), hardlink("h", "evil/secret")}
		}, "evil/secret", nil},
		{"hardlink to absolute path", func(base string) []tent {
			return []tent{hardlink("h", filepath.Join(base, "outside/secret"))}
		}, "does not exist", nil},
		{"whiteout of dotdot", func(string) []tent { return []tent{whiteout("sub/.wh..")} }, "sub/.wh..", nil},
		{"whiteout of dot", func(string) []tent { return []tent{whiteout(".wh..")} }, ".wh..", nil},
		{"whiteout escape", func(string) []tent { return []tent{whiteout("../outside/.wh.secret")} }, "../outside/.wh.secret", nil},
		{"whiteout through symlink", func(string) []tent {
			return []tent{symlink("evil", "../outside"), whiteout("evil/.wh.secret"), whiteout("evil/.wh.sub")}
		}, "", nil},
		{"opaque through symlink", func(string) []tent {
			return []tent{symlink("evil", "../outside"), whiteout("evil/.wh..wh..opq")}
		}, "", nil},
		{"symlink replaced by file", func(base string) []tent {
			return []tent{symlink("evil", filepath.Join(base, "outside/secret")), file("evil", "replaced")}
		}, "", func(t *testing.T, root string) {
			if readString(t, filepath.Join(root, "evil")) != "replaced" {
				t.Error("evil not replaced")
			}
		}},
		{"symlink replaced by dir", func(string) []tent {
			return []tent{symlink("evil", "../outside"), dir("evil/"), file("evil/secret", "inside")}
		}, "", func(t *testing.T, root string) {
			if readString(t, filepath.Join(root, "evil/secret")) != "inside" {
				t.Error("evil/secret not inside")
			}
		}},
		{"hardlink to symlink then write", func(base string) []tent {
			return []tent{symlink("s", filepath.Join(base, "outside/secret")), hardlink("h", "s"), file("h", "pwned?")}
		}, "", nil},
		{"absolute symlink to outside file, then hardlink", func(base string) []tent {
			return []tent{symlink("s", filepath.Join(base, "outside/secret")), hardlink("h", "s")}
		}, "", func(t *testing.T, root string) {
			if target, err := os.Readlink(filepath.Join(root, "h")); err != nil || !strings.HasSuffix(target, "outside/secret") {
				t.Errorf("h should be a link to the symlink itself: %q, %v", target, err)
			}
		}},
		{"symlink loop then write", func(string) []tent {
			return []tent{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")}
		}, "a/x", nil},
		{"file as parent", func(string) []tent { return []tent{file("f", "f"), file("f/x", "x")} }, "f/x", nil},
		{"root as file", func(string) []tent { return []tent{file(".", "x")} }, `"."`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := sentinel(t)
			before := snapshot(t, base)
			root := filepath.Join(base, "root")
			err := Extract(bytes.NewReader(mkTar(t, tc.entries(base)...)), root, ExtractOptions{})
			switch {
			case tc.errWant == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.errWant != "" && err == nil:
				t.Errorf("no error, want one naming %q", tc.errWant)
			case tc.errWant != "" && !strings.Contains(err.Error(), tc.errWant):
				t.Errorf("error %q does not mention %q", err, tc.errWant)
			}
			checkSentinel(t, base, before)
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

func TestExtractErrorsNameEntries(t *testing.T) {
	root := t.TempDir()
	// A hardlink to a missing target and a truncated stream.
	err := Extract(bytes.NewReader(mkTar(t, hardlink("h", "missing"))), root, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), `"h"`) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing hardlink target: %v", err)
	}
	data := mkTar(t, file("big", strings.Repeat("x", 4096)))
	err = Extract(bytes.NewReader(data[:1024]), root, ExtractOptions{})
	if err == nil {
		t.Error("truncated stream extracted without error")
	}
	if err := Extract(bytes.NewReader(nil), filepath.Join(root, "nope"), ExtractOptions{}); err == nil {
		t.Error("extract into a missing dir succeeded")
	}
}

// TestExtractRootless extracts as an unprivileged user: as root, it runs
// itself again as nobody.
func TestExtractRootless(t *testing.T) {
	if os.Getenv("KILN_ARCHIVE_ROOTLESS_DIR") != "" {
		rootlessChild(t, os.Getenv("KILN_ARCHIVE_ROOTLESS_DIR"))
		return
	}
	if os.Getuid() != 0 {
		rootlessChild(t, t.TempDir())
		return
	}
	work, err := os.MkdirTemp("", "kiln-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(work, "archive.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(work, "root")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{work, target} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(target, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestExtractRootless$", "-test.v")
	cmd.Env = append(os.Environ(), "KILN_ARCHIVE_ROOTLESS_DIR="+target, "TMPDIR="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestExtractRootless") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	t.Logf("as nobody:\n%s", out)
}

func rootlessChild(t *testing.T, root string) {
	if os.Getuid() == 0 {
		t.Fatal("rootless child runs as root")
	}
	layer0 := mkTar(t,
		tent{name: "ro/", typ: tar.TypeDir, mode: 0o555},
		file("ro/a", "a"), file("ro/b", "b"),
		tent{name: "ro/sub/", typ: tar.TypeDir, mode: 0o500},
		file("ro/sub/c", "c"),
		tent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		tent{name: "cap", typ: tar.TypeReg, mode: 0o755, body: "x", pax: map[string]string{"SCHILY.xattr.security.capability": capValue, "SCHILY.xattr.trusted.x": "y"}},
		tent{name: "suid", typ: tar.TypeReg, mode: 0o4755, body: "s"},
		tent{name: "owned", typ: tar.TypeReg, mode: 0o644, uid: 0, gid: 0, body: "o"},
	)
	var skips skipLog
	if err := Extract(bytes.NewReader(layer0), root, skips.opts(false)); err != nil {
		t.Fatal(err)
	}
	if !skips.has("dev/null") {
		t.Errorf("mknod of a char device as non-root not reported: %q", skips.entries)
	}
	if !skips.has("cap") {
		t.Errorf("security.capability / trusted.* as non-root not reported: %q", skips.entries)
	}
	if st := lstat(t, filepath.Join(root, "suid")); st.Mode&0o4000 == 0 {
		t.Errorf("setuid bit lost on an own file: %o", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "owned")); st.Uid != uint32(os.Getuid()) {
		t.Errorf("owned by %d, want the caller", st.Uid)
	}
	// Layer 1 writes into and removes from the read-only directories.
	layer1 := mkTar(t, whiteout("ro/.wh.a"), file("ro/new", "n"), whiteout("ro/sub/.wh.c"), whiteout(".wh.cap"), file("ro/b", "b2"))
	if err := Extract(bytes.NewReader(layer1), root, skips.opts(false)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"ro/a": false, "ro/new": true, "ro/sub/c": false, "cap": false} {
		if exists(filepath.Join(root, p)) != want {
			t.Errorf("%s exists = %v, want %v", p, !want, want)
		}
	}
	if readString(t, filepath.Join(root, "ro/b")) != "b2" {
		t.Error("ro/b not replaced")
	}
	for p, mode := range map[string]uint32{"ro": 0o555, "ro/sub": 0o500} {
		if st := lstat(t, filepath.Join(root, p)); st.Mode&0o7777 != mode {
			t.Errorf("%s mode %o after extraction, want %o restored", p, st.Mode&0o7777, mode)
		}
	}
	// Layer 2 removes the read-only tree altogether.
	if err := Extract(bytes.NewReader(mkTar(t, whiteout(".wh.ro"))), root, skips.opts(false)); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(root, "ro")) {
		t.Error("ro not removed")
	}
	fmt.Println("rootless extraction ok; skipped:", skips.entries)
}

func TestExtractMatchesTree(t *testing.T) {
	l0 := mkTar(t, file("etc/passwd", "p"), file("usr/lib/x", "x"), symlink("lib", "usr/lib"), dir("d/"), file("d/a", "a"), file("d/b/c", "c"), file("w/f", "f"))
	l1 := mkTar(t, whiteout("d/.wh..wh..opq"), file("d/new", "n"), whiteout(".wh.w"), file("w/g", "g"), hardlink("h", "etc/passwd"), file("etc/passwd", "p2"))
	root := t.TempDir()
	for _, l := range [][]byte{l0, l1} {
		if err := Extract(bytes.NewReader(l), root, ExtractOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tree, cl := buildTree(t, l0, l1)
	compareTreeWithDir(t, tree, cl.openers(), root)
}

// compareTreeWithDir checks that the tree and an extracted dir hold the
// same paths, types, modes, link targets and file contents.
func compareTreeWithDir(t *testing.T, tree *Tree, layers []Opener, root string) {
	t.Helper()
	onDisk := map[string]bool{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			onDisk[rel] = true
		}
		return nil
	})
	var files []string
	inTree := 0
	err := tree.Walk("", func(n *Node) error {
		if n.Path == "" {
			return nil
		}
		inTree++
		p := filepath.Join(root, n.Path)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s in the tree, not on disk: %v", n.Path, err)
			return nil
		}
		switch n.Header.Typeflag {
		case tar.TypeDir:
			if !st.IsDir() {
				t.Errorf("%s: directory in the tree, %v on disk", n.Path, st.Mode())
			}
		case tar.TypeSymlink:
			if target, _ := os.Readlink(p); target != n.Header.Linkname {
				t.Errorf("%s: symlink to %q in the tree, %q on disk", n.Path, n.Header.Linkname, target)
			}
		case tar.TypeReg, tar.TypeLink:
			if !st.Mode().IsRegular() {
				t.Errorf("%s: regular file in the tree, %v on disk", n.Path, st.Mode())
			}
			files = append(files, n.Path)
		}
		if n.Header.Typeflag != tar.TypeSymlink && n.Header.Typeflag != tar.TypeLink && uint32(st.Mode().Perm()) != uint32(n.Header.Mode&0o777) {
			t.Errorf("%s: mode %o in the tree, %o on disk", n.Path, n.Header.Mode&0o777, st.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inTree != len(onDisk) {
		var extra []string
		for p := range onDisk {
			if _, ok := tree.Lookup(p); !ok {
				extra = append(extra, p)
			}
		}
		t.Errorf("%d paths in the tree, %d on disk; on disk only: %q", inTree, len(onDisk), extra)
	}
	err = tree.ReadFiles(layers, files, func(n *Node, r io.Reader) error {
		want, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if got := readString(t, filepath.Join(root, n.Path)); got != string(want) {
			t.Errorf("%s: %d bytes on disk differ from the %d in the layer", n.Path, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkExtract extracts a layer of 2,000 small files in 50
// directories plus 4 files of 4 MiB.
func BenchmarkExtract(b *testing.B) {
	var entries []tent
	for d := 0; d < 50; d++ {
		entries = append(entries, dir(fmt.Sprintf("d%02d/", d)))
		for f := 0; f < 40; f++ {
			entries = append(entries, file(fmt.Sprintf("d%02d/f%02d", d, f), strings.Repeat("x", 2000)))
		}
	}
	big := string(testPayload(4<<20, 5))
	for i := 0; i < 4; i++ {
		entries = append(entries, file(fmt.Sprintf("big%d", i), big))
	}
	layer := mkTar(b, entries...)
	b.SetBytes(int64(len(layer)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		root := b.TempDir()
		b.StartTimer()
		if err := Extract(bytes.NewReader(layer), root, ExtractOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
