package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// copyLayerEntries are entries of every kind, and of every size of name,
// id and time a layer can have, as a step's diff writes them.
func copyLayerEntries() []layerEntry {
	long := strings.Repeat("long-directory-name/", 8) // 160 bytes: a PAX path
	return []layerEntry{
		{h: &tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)}},
		{h: &tar.Header{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}},
		{h: &tar.Header{Name: "etc/conf", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 33, Gid: 33, ModTime: time.Unix(1700000001, 0),
			PAXRecords: map[string]string{"SCHILY.xattr.user.note": "kept", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}}, body: "conf\n"},
		{h: &tar.Header{Name: "etc/link", Typeflag: tar.TypeLink, Linkname: "etc/conf", Mode: 0o640, ModTime: time.Unix(1700000001, 0)}},
		{h: &tar.Header{Name: "etc/sym", Typeflag: tar.TypeSymlink, Linkname: "/" + long + "target", Mode: 0o777}},
		{h: &tar.Header{Name: long, Typeflag: tar.TypeDir, Mode: 0o700, Uid: 3_000_000, Gid: 3_000_000}},
		{h: &tar.Header{Name: long + strings.Repeat("f", 120), Typeflag: tar.TypeReg, Mode: 0o4755}, body: strings.Repeat("x", 70_000)},
		{h: &tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{h: &tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
		{h: &tar.Header{Name: "tmp/empty", Typeflag: tar.TypeReg, Mode: 0o1777, ModTime: time.Unix(4_000_000_000_0, 0)}},
	}
}

type layerEntry struct {
	h    *tar.Header
	body string
}

func fillEntries(ents []layerEntry) func(tw *TarWriter) error {
	return func(tw *TarWriter) error {
		for _, e := range ents {
			h := *e.h
			h.Size = int64(len(e.body))
			if err := tw.WriteHeader(&h); err != nil {
				return err
			}
			if _, err := tw.Write([]byte(e.body)); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestCopyLayerIsWriteLayer: a TarWriter's stream copied as a layer gives
// the blob, diff ID and digest WriteLayer gives for the same entries, and
// every header on the way.
func TestCopyLayerIsWriteLayer(t *testing.T) {
	t.Parallel()
	ents := copyLayerEntries()
	var stream bytes.Buffer
	if _, err := WriteLayer(&stream, None, TarOptions{}, fillEntries(ents)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{Gzip, Zstd, None} {
		var want, got bytes.Buffer
		wi, err := WriteLayer(&want, c, TarOptions{}, fillEntries(ents))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		gi, err := CopyLayer(&got, c, bytes.NewReader(stream.Bytes()), func(h *tar.Header) { names = append(names, h.Name) })
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if gi != wi || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s: copied %+v, written %+v", c, gi, wi)
		}
		if len(names) != len(ents) || names[5] != ents[5].h.Name {
			t.Errorf("%s: seen %d headers (%q...), want %d", c, len(names), names, len(ents))
		}
	}
}

// TestCopyLayerRefuses: a stream that is not a TarWriter's (user names,
// access times, GNU long names, a ".." name) or not a tar is an error
// naming the entry, not a layer other than WriteLayer's.
func TestCopyLayerRefuses(t *testing.T) {
	t.Parallel()
	raw := func(hs ...*tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		tw.Close()
		return b.Bytes()
	}
	cases := map[string][]byte{
		"uname":   raw(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, Uname: "root", Format: tar.FormatPAX}),
		"atime":   raw(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, AccessTime: time.Unix(5, 0), Format: tar.FormatPAX}),
		"gnu":     raw(&tar.Header{Name: strings.Repeat("n", 200), Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatGNU}),
		"dotdot":  raw(&tar.Header{Name: "../a", Typeflag: tar.TypeReg, Mode: 0o644}),
		"subsec":  raw(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(5, 5), Format: tar.FormatPAX}),
		"comment": raw(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, PAXRecords: map[string]string{"comment": "c"}}),
		"not tar": []byte(strings.Repeat("not a tar ", 100)),
	}
	for name, data := range cases {
		_, err := CopyLayer(io.Discard, Gzip, bytes.NewReader(data), nil)
		if err == nil {
			t.Errorf("%s: copied", name)
			continue
		}
		if name != "not tar" && name != "gnu" && !strings.Contains(err.Error(), `"`) {
			t.Errorf("%s: %v does not name the entry", name, err)
		}
	}
}
