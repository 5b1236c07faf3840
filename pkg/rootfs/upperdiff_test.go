package rootfs_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/rootfs"
)

// TestWriteUpperDiffEntries converts a directory laid out as an overlay
// upper directory (as the overlay leaves it in a user namespace: user.*
// xattrs) and checks every entry: types, modes, owners, sizes, contents,
// kept and dropped xattrs, hardlinks, whiteouts of both kinds, an opaque
// directory, excluded paths and a socket left out.
func TestWriteUpperDiffEntries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	at := func(p string) string { return filepath.Join(root, p) }
	write := func(p, content string, mode os.FileMode) {
		t.Helper()
		os.MkdirAll(filepath.Dir(at(p)), 0o755)
		if err := os.WriteFile(at(p), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(at(p), mode); err != nil {
			t.Fatal(err)
		}
	}
	setx := func(p, k, v string) {
		t.Helper()
		if err := unix.Lsetxattr(at(p), k, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				t.Skipf("no user xattrs on %s's filesystem", root)
			}
			t.Fatal(err)
		}
	}
	big := strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB: several reads
	write("a", "a", 0o640)
	write("big", big, 0o644)
	write("empty", "", 0o600)
	write("d/in", "in", 0o644)
	write("d/sub/deep", "deep", 0o644)
	write("ex/x", "x", 0o644)
	write("keep/ex", "not excluded: only the top-level ex is", 0o644)
	write("h1", "linked", 0o644)
	if err := os.Link(at("h1"), at("h2")); err != nil {
		t.Fatal(err)
	}
	write("xwh", "", 0o644)
	if err := os.Symlink("a", at("s")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(at("p"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", at("sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	setx("a", "user.note", "kept")
	setx("a", "user.overlay.origin", "dropped")
	setx("d", "user.overlay.opaque", "y")
	setx("xwh", "user.overlay.whiteout", "")
	wantWh := ""
	if err := unix.Mknod(at("wh"), unix.S_IFCHR, 0); err == nil {
		wantWh = ".wh.wh 0 0000 0:0 0\n"
	} else if !errors.Is(err, unix.EPERM) {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	stats, err := rootfs.WriteUpperDiff(root, []string{"ex"}, tw)
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	own := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	want := "a 0 0640 " + own + " 1 user.note=kept\n" +
		"big 0 0644 " + own + " 655360\n" +
		"d/ 5 0755 " + own + " 0\n" +
		"d/.wh..wh..opq 0 0000 0:0 0\n" +
		"d/in 0 0644 " + own + " 2\n" +
		"d/sub/ 5 0755 " + own + " 0\n" +
		"d/sub/deep 0 0644 " + own + " 4\n" +
		"empty 0 0600 " + own + " 0\n" +
		"h1 0 0644 " + own + " 6\n" +
		"h2 1 0644 " + own + " 0 h1\n" +
		"keep/ 5 0755 " + own + " 0\n" +
		"keep/ex 0 0644 " + own + " 38\n" +
		"p 6 0600 " + own + " 0\n" +
		"s 2 0777 " + own + " 0 a\n" +
		wantWh +
		".wh.xwh 0 0000 0:0 0\n"
	got, contents := upperEntries(t, buf.Bytes())
	if got != want {
		t.Errorf("upper diff:\n%s\nwant:\n%s", got, want)
	}
	for name, body := range map[string]string{"a": "a", "big": big, "d/in": "in", "d/sub/deep": "deep", "h1": "linked"} {
		if contents[name] != body {
			t.Errorf("%s: content %.20q (%d bytes), want %.20q (%d)", name, contents[name], len(contents[name]), body, len(body))
		}
	}
	if stats.Bytes != int64(1+len(big)+2+4+6+38) {
		t.Errorf("stats: %d content bytes", stats.Bytes)
	}

	// Overlay metadata a layer cannot say is refused, naming the path.
	setx("d/sub", "user.overlay.redirect", "/elsewhere")
	_, err = rootfs.WriteUpperDiff(root, nil, tar.NewWriter(io.Discard))
	if err == nil || !strings.Contains(err.Error(), "d/sub") || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("a redirect xattr: %v", err)
	}
	// A missing upper directory is an error naming it.
	if _, err := rootfs.WriteUpperDiff(at("nothing"), nil, tar.NewWriter(io.Discard)); err == nil || !strings.Contains(err.Error(), "nothing") {
		t.Errorf("missing upper: %v", err)
	}
}

// upperEntries lists a tar's entries (name, type, mode, owner, size, link
// target, xattrs), one a line, and the regular files' contents.
func upperEntries(t *testing.T, data []byte) (string, map[string]string) {
	t.Helper()
	var b strings.Builder
	contents := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %c %04o %d:%d %d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size)
		if h.Linkname != "" {
			b.WriteString(" " + h.Linkname)
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				fmt.Fprintf(&b, " %s=%s", x, v)
			}
		}
		b.WriteByte('\n')
		if h.Typeflag == tar.TypeReg {
			body, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			contents[h.Name] = string(body)
		}
	}
	return b.String(), contents
}

// BenchmarkWriteUpperDiff converts an upper directory of 10,000 small
// files in 20 directories (the many-files workload's shape, smaller).
func BenchmarkWriteUpperDiff(b *testing.B) {
	root := b.TempDir()
	for d := 0; d < 20; d++ {
		dir := filepath.Join(root, "data", fmt.Sprint(d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 500; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(f)), []byte(fmt.Sprintf("%d/%d\n", d, f)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tw := tar.NewWriter(io.Discard)
		st, err := rootfs.WriteUpperDiff(root, nil, tw)
		if err != nil || st.Entries != 10_021 {
			b.Fatalf("%+v %v", st, err)
		}
	}
}
