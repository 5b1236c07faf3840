//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// metaSnapshot lists every path under dir with its type, content, mode,
// owner, link count, modification time and user xattrs.
func metaSnapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := snapshot(t, dir)
	for rel, v := range out {
		p := filepath.Join(dir, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		v += fmt.Sprintf(" mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			v += fmt.Sprintf(" nlink=%d", st.Nlink)
		}
		if st.Mtim.Sec < 1262304000 { // from the layer (before 2010), not made now
			v += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			buf := make([]byte, 64)
			if n, err := unix.Lgetxattr(p, "user.note", buf); err == nil {
				v += " user.note=" + string(buf[:n])
			}
		}
		out[rel] = v
	}
	return out
}

// parallelLayer is a layer that meets every case where a file handed to a
// writer could meet a later entry.
func parallelLayer(t testing.TB) []byte {
	old := time.Date(2003, 4, 5, 6, 7, 8, 123456789, time.UTC)
	modes := []int64{0o644, 0o755, 0o600, 0o444, 0o4755, 0o2711, 0o1777, 0o640}
	var es []tent
	es = append(es, tent{name: "./", typ: tar.TypeDir, mode: 0o755, mtime: old})
	es = append(es, file("top", "at the root"))
	for d := 0; d < 12; d++ {
		dn := fmt.Sprintf("d%02d", d)
		es = append(es, tent{name: dn + "/", typ: tar.TypeDir, mode: 0o755, mtime: old.Add(time.Duration(d) * time.Hour)})
		for f := 0; f < 40; f++ {
			e := file(fmt.Sprintf("%s/f%03d", dn, f), strings.Repeat(fmt.Sprintf("%d.%d ", d, f), f*7))
			e.mode = modes[(d+f)%len(modes)]
			e.mtime = old.Add(time.Duration(d*100+f) * time.Minute)
			if f%9 == 0 {
				e.pax = map[string]string{"SCHILY.xattr.user.note": e.name}
			}
			es = append(es, e)
		}
		// Nested directories made implicitly and explicitly.
		es = append(es, file(dn+"/implicit/a/b", "deep"))
		es = append(es, tent{name: dn + "/sub/", typ: tar.TypeDir, mode: 0o700, mtime: old})
		es = append(es, file(dn+"/sub/x", "x"))
	}
	big := string(testPayload(batchSize+4096, 3))
	es = append(es,
		// Bigger than a batch: written in order.
		file("d00/big", big),
		// The same name twice: the second wins.
		file("d01/f001", "second version"),
		// A hardlink to a file still in a batch, and one to the hardlink.
		hardlink("d02/link", "d02/f005"),
		hardlink("d03/link2", "d02/link"),
		// A file replaced by a directory, and that directory's content.
		tent{name: "d04/f006/", typ: tar.TypeDir, mode: 0o755, mtime: old},
		file("d04/f006/inside", "inside"),
		// A directory full of handed-over files replaced by a file, a
		// symlink and a fifo.
		file("d05", "was a directory"),
		symlink("d06", "d05"),
		tent{name: "d07", typ: tar.TypeFifo, mode: 0o600},
		// Whiteouts and an opaque marker after files of this layer (they
		// stay: whiteouts remove only what the layers below left).
		whiteout("d08/.wh.f010"),
		whiteout("d09/.wh..wh..opq"),
		file("d09/after-opaque", "after"),
		// A directory entry again, with an xattr, after its files.
		tent{name: "d10/", typ: tar.TypeDir, mode: 0o750, mtime: old, pax: map[string]string{"SCHILY.xattr.user.note": "again"}},
	)
	return mkTar(t, es...)
}

func TestExtractParallelMatchesInOrder(t *testing.T) {
	layer := parallelLayer(t)
	want := ""
	for i, workers := range []int{-1, 1, 4, 0, 2} {
		root := t.TempDir()
		var skipped skipLog
		opts := skipped.opts(os.Getuid() == 0)
		opts.Workers = workers
		opts.WriteBack = i == 4 // the same tree, its writeback started early
		handed := handedOver.Load()
		if err := Extract(bytes.NewReader(layer), root, opts); err != nil {
			t.Fatalf("workers %d: %v", workers, err)
		}
		// Most files went to the writers (none without them).
		if n := handedOver.Load() - handed; (workers < 0) != (n == 0) || (workers >= 0 && n < 400) {
			t.Errorf("workers %d: %d files handed to writers", workers, n)
		}
		snap := metaSnapshot(t, root)
		var b strings.Builder
		for _, p := range sortedKeys(snap) {
			fmt.Fprintf(&b, "%s: %.120s\n", p, snap[p])
		}
		if workers == -1 {
			want = b.String()
			// The cases the layer is for did happen.
			for p, v := range map[string]string{
				"d01/f001":        "file:second version",
				"d04/f006/inside": "file:inside",
				"d05":             "file:was a directory",
				"d06":             "link:d05",
				"d09/f001":        "file:",
			} {
				if !strings.HasPrefix(snap[p], v) {
					t.Errorf("%s = %.60q, want %q", p, snap[p], v)
				}
			}
			if !strings.Contains(snap["d02/f005"], "nlink=3") {
				t.Errorf("d02/f005 = %q, want 3 links", snap["d02/f005"])
			}
			continue
		}
		if got := b.String(); got != want {
			t.Errorf("workers %d: the tree differs from the one extracted in order:\n%s", workers, lineDiff(want, got))
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lineDiff lists the lines only one of a and b has.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			fmt.Fprintf(&out, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			fmt.Fprintf(&out, "+ %s\n", l)
		}
	}
	return out.String()
}

// TestExtractParallelErrorStops: a file a writer cannot create (its name
// is too long for the filesystem) fails the extraction, named, and no
// writer is left running once Extract returns.
func TestExtractParallelErrorStops(t *testing.T) {
	var es []tent
	es = append(es, dir("d/"))
	for i := 0; i < 500; i++ {
		es = append(es, file(fmt.Sprintf("d/f%03d", i), "x"))
	}
	bad := "d/" + strings.Repeat("n", 300)
	es = append(es, file(bad, "too long"))
	for i := 0; i < 2000; i++ {
		es = append(es, file(fmt.Sprintf("d/g%04d", i), "after"))
	}
	layer := mkTar(t, es...)
	before := runtime.NumGoroutine()
	root := t.TempDir()
	err := Extract(bytes.NewReader(layer), root, ExtractOptions{Workers: 4})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Extract = %v, want an error naming %q", err, bad)
	}
	// Nothing is written after Extract returned.
	count := func() int {
		n := 0
		_ = filepath.WalkDir(root, func(string, fs.DirEntry, error) error { n++; return nil })
		return n
	}
	n := count()
	// A worker has returned from wg.Done before its goroutine is gone:
	// give the runtime a moment to retire it, never a writer that goes on.
	g := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); g > before && time.Now().Before(deadline); g = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	if g > before {
		t.Errorf("%d goroutines 2 s after Extract returned, %d before", g, before)
	}
	time.Sleep(50 * time.Millisecond)
	if m := count(); m != n {
		t.Errorf("%d paths after Extract returned, %d a moment later", n, m)
	}
}

// TestExtractParallelHostile: the hostile layers stay contained with
// writers (TestExtractHostile runs with the default, this with many).
func TestExtractParallelHostile(t *testing.T) {
	var many []tent
	many = append(many, dir("d/"))
	for i := 0; i < 300; i++ {
		many = append(many, file(fmt.Sprintf("d/f%03d", i), "x"))
	}
	// The directory full of handed-over files becomes a symlink out of
	// the root; what follows goes through it or at it.
	swap := append(append([]tent(nil), many...), symlink("d", "../outside"), file("d/secret", "pwned"), hardlink("d/h", "d/f001"))
	swapBack := append(append([]tent(nil), many...), symlink("d", "/"), dir("d/"), file("d/f000", "again"), symlink("d/f001", "../../outside/secret"), file("d/f001", "pwned"))
	layers := append(fuzzSeedLayers(t), mkTar(t, swap...), mkTar(t, swapBack...))
	for _, l := range layers {
		base := sentinel(t)
		before := snapshot(t, base)
		_ = Extract(bytes.NewReader(l), filepath.Join(base, "root"), ExtractOptions{Workers: 8, OnSkip: func(string, string) {}})
		checkSentinel(t, base, before)
	}
}
