//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fuzzSeedLayers are the seed layers of the fuzz tests; testdata/fuzz
// holds them too (see TestWriteFuzzSeeds).
func fuzzSeedLayers(t testing.TB) [][]byte {
	return [][]byte{
		mkTar(t, dir("etc/"), file("etc/passwd", "root:x:0:0\n"), symlink("bin", "usr/bin"), file("usr/bin/sh", "sh"), hardlink("usr/bin/ash", "usr/bin/sh")),
		mkTar(t, file("../escape", "x")),
		mkTar(t, symlink("evil", "../outside"), file("evil/secret", "pwned")),
		mkTar(t, symlink("evil", "/"), file("evil/tmp/x", "pwned")),
		mkTar(t, hardlink("h", "../outside/secret")),
		mkTar(t, file("d/a", "a"), whiteout("d/.wh..wh..opq"), whiteout(".wh.d"), whiteout("x/.wh..")),
		mkTar(t, symlink("var/mail", "spool/mail"), symlink("var/spool/mail", "../mail"), file("var/mail/x", "x")),
		mkTar(t, tent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}, tent{name: "fifo", typ: tar.TypeFifo, mode: 0o644}),
		mkTar(t, tent{name: strings.Repeat("long/", 40) + "f", typ: tar.TypeReg, mode: 0o4755, body: "x",
			pax: map[string]string{"SCHILY.xattr.user.a": "b", "SCHILY.xattr.security.capability": capValue}}),
		mkTar(t, file("f", "f"), file("f/x", "x"), dir("f/"), symlink("s", "s"), file("s/x", "x")),
	}
}

// TestWriteFuzzSeeds rewrites testdata/fuzz from fuzzSeedLayers when
// KILN_WRITE_FUZZ_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KILN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set KILN_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	for _, target := range []string{"FuzzExtract", "FuzzTree"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, l := range fuzzSeedLayers(t) {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", l)
			if target == "FuzzTree" {
				content += fmt.Sprintf("string(%q)\n", []string{"etc/passwd", "evil/secret", "var/mail/x", "bin/sh"}[i%4])
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// fuzzable reports whether a stream is small enough to extract in a fuzz
// run: no entry (sparse ones included) may expand beyond 1 MiB.
func fuzzable(data []byte) bool {
	tr := tar.NewReader(bytes.NewReader(data))
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err != nil || n > 500 {
			return err != nil
		}
		if h.Size > 1<<20 || isSparse(h) {
			return false
		}
	}
}

// FuzzExtract extracts arbitrary streams: Extract must never panic, never
// write outside its target, and, when it and BuildTree both accept a
// stream, the directory must hold what the tree says.
//
// Run it with a short minimisation, which otherwise dominates (every
// input touches the filesystem):
//
//	go test -run XXX -fuzz '^FuzzExtract$' -fuzzminimizetime 1x -parallel 1 ./pkg/archive
func FuzzExtract(f *testing.F) {
	for _, l := range fuzzSeedLayers(f) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		t.Cleanup(watchdog())
		if !fuzzable(data) {
			t.Skip()
		}
		base := sentinel(t)
		before := snapshot(t, base)
		root := filepath.Join(base, "root")
		errExtract := Extract(bytes.NewReader(data), root, ExtractOptions{OnSkip: func(string, string) {}})
		checkSentinel(t, base, before)
		tree := NewTree()
		errTree := tree.Apply(0, bytes.NewReader(data))
		if errExtract != nil || errTree != nil {
			return
		}
		// Both accepted the stream: compare paths and types.
		onDisk := snapshot(t, root)
		delete(onDisk, ".")
		err := tree.Walk("", func(n *Node) error {
			if n.Path == "" {
				return nil
			}
			got, ok := onDisk[n.Path]
			delete(onDisk, n.Path)
			if !ok {
				if n.Header.Typeflag == tar.TypeChar || n.Header.Typeflag == tar.TypeBlock {
					return nil // mknod may be refused
				}
				t.Errorf("%s (type %q) in the tree, not on disk", n.Path, n.Header.Typeflag)
				return nil
			}
			switch n.Header.Typeflag {
			case tar.TypeDir:
				if got != "dir" {
					t.Errorf("%s: directory in the tree, %.20q on disk", n.Path, got)
				}
			case tar.TypeSymlink:
				if got != "link:"+n.Header.Linkname {
					t.Errorf("%s: symlink to %q in the tree, %.40q on disk", n.Path, n.Header.Linkname, got)
				}
			case tar.TypeReg, tar.TypeLink:
				if !strings.HasPrefix(got, "file:") {
					t.Errorf("%s: file in the tree, %.40q on disk", n.Path, got)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for p := range onDisk {
			t.Errorf("%s on disk, not in the tree", p)
		}
	})
}

// FuzzTree builds a tree from an arbitrary stream and exercises its read
// side: nothing may panic, and what Resolve finds must be what Lookup has.
func FuzzTree(f *testing.F) {
	for i, l := range fuzzSeedLayers(f) {
		f.Add(l, []string{"etc/passwd", "evil/secret", "var/mail/x", "bin/sh"}[i%4])
	}
	f.Fuzz(func(t *testing.T, data []byte, p string) {
		t.Cleanup(watchdog())
		if !fuzzable(data) {
			t.Skip()
		}
		open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		layers := []Opener{open, open}
		tree, err := BuildTree(layers)
		if err != nil {
			return
		}
		resolved, n, err := tree.Resolve(p)
		if err == nil && n != nil {
			if m, ok := tree.Lookup(resolved); !ok || m != n {
				t.Errorf("Resolve(%q) = %q, not what Lookup finds", p, resolved)
			}
		}
		var files []string
		err = tree.Walk("", func(n *Node) error {
			if _, ok := tree.Lookup(n.Path); !ok {
				t.Errorf("walked %q, Lookup misses it", n.Path)
			}
			if n.Header.Typeflag == tar.TypeReg {
				files = append(files, n.Path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = tree.ReadFiles(layers, files, func(n *Node, r io.Reader) error {
			got, err := io.ReadAll(r)
			if err == nil && int64(len(got)) != n.Header.Size {
				t.Errorf("%s: read %d bytes, header says %d", n.Path, len(got), n.Header.Size)
			}
			return err
		})
		if err != nil {
			t.Errorf("ReadFiles of the tree's own files: %v", err)
		}
		_, _, _, _ = FindFile(layers, p, 1<<20)
	})
}

// watchdog crashes the process with every goroutine's stack if one fuzz
// input takes more than 20 seconds, so that a hang is reported (with its
// input) instead of stalling the fuzzer. Call the returned func when done.
func watchdog() func() {
	timer := time.AfterFunc(20*time.Second, func() {
		buf := make([]byte, 1<<20)
		panic("fuzz input hung:\n" + string(buf[:runtime.Stack(buf, true)]))
	})
	return func() { timer.Stop() }
}

// FuzzDecompress feeds arbitrary bytes (seeded with each format kiln
// sniffs) to Decompress, as ADD archives and `build -` contexts are read:
// never a panic, and never more output than the expansion limit allows.
func FuzzDecompress(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("kiln "), 1000))
	zw.Close()
	f.Add(gz.Bytes())
	f.Add([]byte("BZh91AY&SY"))
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0, 0})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0})
	f.Add([]byte("plain text"))
	f.Fuzz(func(t *testing.T, data []byte) {
		t.Cleanup(watchdog())
		rc, _, err := Decompress(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer rc.Close()
		n, _ := io.Copy(io.Discard, io.LimitReader(rc, ExpansionFloor+1))
		if n > ExpansionFloor && ExpansionRatio() > 0 {
			t.Fatalf("%d input bytes decompressed to more than %d", len(data), ExpansionFloor)
		}
	})
}
