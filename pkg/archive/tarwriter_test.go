package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func writeTar(t testing.TB, opts TarOptions, hdrs []*tar.Header, bodies map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := NewTarWriter(&buf, opts)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("WriteHeader(%q): %v", h.Name, err)
		}
		if b, ok := bodies[h.Name]; ok {
			if _, err := io.WriteString(tw, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTarWriterNormalises(t *testing.T) {
	mtime := time.Date(2023, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	longName := strings.Repeat("d/", 80) + "file-with-a-long-name.txt"
	hdrs := []*tar.Header{
		{Name: "/abs/dir", Typeflag: tar.TypeDir, Mode: 0o40755, ModTime: mtime, Uname: "alice", Gname: "staff",
			AccessTime: mtime, ChangeTime: mtime, Size: 99},
		{Name: "./rel/./file", Typeflag: tar.TypeReg, Mode: 0o104755, Size: 5, ModTime: mtime, Uid: 1 << 30, Gid: 3_000_000},
		{Name: "link", Typeflag: tar.TypeLink, Linkname: "/rel//file", ModTime: mtime, Size: 5},
		{Name: "sym", Typeflag: tar.TypeSymlink, Linkname: "../somewhere/else", ModTime: mtime},
		{Name: longName, Typeflag: tar.TypeReg, Mode: 0o600, Size: 1, ModTime: mtime,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.user.a": "b", "mtime": "1.5", "atime": "7"}},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "zero-time", Typeflag: tar.TypeReg},
		{Name: "old-style", Typeflag: '\x00', Size: 1},
	}
	bodies := map[string]string{"./rel/./file": "hello", longName: "x", "old-style": "o"}
	data := writeTar(t, TarOptions{}, hdrs, bodies)
	got, contents := readTar(t, data)
	if len(got) != len(hdrs) {
		t.Fatalf("%d entries, want %d", len(got), len(hdrs))
	}
	check := func(i int, field string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("entry %d (%s): %s = %v, want %v", i, hdrs[i].Name, field, got, want)
		}
	}
	check(0, "Name", got[0].Name, "abs/dir/")
	check(0, "Mode", got[0].Mode, int64(0o755))
	check(0, "Uname", got[0].Uname, "")
	check(0, "Gname", got[0].Gname, "")
	check(0, "AccessTime", got[0].AccessTime.IsZero(), true)
	check(0, "ChangeTime", got[0].ChangeTime.IsZero(), true)
	check(0, "ModTime", got[0].ModTime.Equal(mtime.Truncate(time.Second)), true)
	check(0, "Size", got[0].Size, int64(0))
	check(1, "Name", got[1].Name, "rel/file")
	check(1, "Mode", got[1].Mode, int64(0o4755))
	check(1, "Uid", got[1].Uid, 1<<30)
	check(1, "Gid", got[1].Gid, 3_000_000)
	check(1, "content", contents["rel/file"], "hello")
	check(2, "Linkname", got[2].Linkname, "rel/file")
	check(2, "Size", got[2].Size, int64(0))
	check(3, "Linkname", got[3].Linkname, "../somewhere/else")
	check(4, "Name", got[4].Name, longName)
	check(4, "xattr", got[4].PAXRecords["SCHILY.xattr.security.capability"], "\x01\x00\x00\x02")
	check(4, "xattr", got[4].PAXRecords["SCHILY.xattr.user.a"], "b")
	check(4, "ModTime", got[4].ModTime.Equal(mtime.Truncate(time.Second)), true)
	check(4, "AccessTime", got[4].AccessTime.IsZero(), true)
	check(5, "Devminor", got[5].Devminor, int64(3))
	check(6, "ModTime", got[6].ModTime.Unix(), int64(0))
	check(7, "Typeflag", got[7].Typeflag, byte(tar.TypeReg))

	// Same headers, same bytes; with a timestamp, every ModTime is it.
	if again := writeTar(t, TarOptions{}, hdrs, bodies); !bytes.Equal(data, again) {
		t.Fatal("same headers gave different bytes")
	}
	ts := time.Unix(1700000000, 999).UTC()
	stamped := writeTar(t, TarOptions{Timestamp: &ts}, hdrs, bodies)
	sh, _ := readTar(t, stamped)
	for _, h := range sh {
		if h.ModTime.Unix() != 1700000000 || h.ModTime.Nanosecond() != 0 {
			t.Errorf("%s: ModTime %v with Timestamp set", h.Name, h.ModTime)
		}
	}
	// Fields that the normalisation drops do not change the output.
	hdrs2 := make([]*tar.Header, len(hdrs))
	for i, h := range hdrs {
		c := *h
		c.Uname, c.Gname, c.AccessTime = "root", "root", time.Now()
		c.ModTime = c.ModTime.Add(100 * time.Millisecond)
		hdrs2[i] = &c
	}
	if other := writeTar(t, TarOptions{}, hdrs2, bodies); !bytes.Equal(data, other) {
		t.Error("dropped fields changed the output")
	}
	// The input headers are not modified.
	if hdrs[0].Name != "/abs/dir" || hdrs[0].Uname != "alice" {
		t.Error("WriteHeader modified its argument")
	}
}

func TestTarWriterRefuses(t *testing.T) {
	for _, h := range []*tar.Header{
		{Name: "", Typeflag: tar.TypeReg},
		{Name: "/", Typeflag: tar.TypeDir},
		{Name: "./", Typeflag: tar.TypeDir},
		{Name: "../etc/passwd", Typeflag: tar.TypeReg},
		{Name: "a/../../b", Typeflag: tar.TypeReg},
		{Name: "a/..", Typeflag: tar.TypeDir},
		{Name: "ok", Typeflag: tar.TypeLink, Linkname: "../outside"},
		{Name: "ok", Typeflag: tar.TypeLink, Linkname: ""},
		{Name: "ok", Typeflag: tar.TypeSymlink, Linkname: ""},
		{Name: "ok", Typeflag: tar.TypeXGlobalHeader},
	} {
		tw := NewTarWriter(io.Discard, TarOptions{})
		err := tw.WriteHeader(h)
		if err == nil {
			t.Errorf("WriteHeader(%q, type %q, link %q) succeeded", h.Name, h.Typeflag, h.Linkname)
			continue
		}
		if !strings.Contains(err.Error(), "\""+h.Name+"\"") {
			t.Errorf("error %q does not name entry %q", err, h.Name)
		}
	}
	if err := NewTarWriter(io.Discard, TarOptions{}).WriteHeader(nil); err == nil {
		t.Error("WriteHeader(nil) succeeded")
	}
}
