package build

import (
	"archive/tar"
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/archive"
)

// TestHeadersIndexIsTheLayersIndex: the index a RUN step's layer gets
// from the headers CopyLayer saw as it wrote the layer is the index
// reading the layer gives (long names and link targets in PAX records,
// xattrs, hard links, whiteouts, devices, times).
func TestHeadersIndexIsTheLayersIndex(t *testing.T) {
	t.Parallel()
	mtime := time.Unix(1700000000, 0)
	long := strings.Repeat("d", 120)
	var raw bytes.Buffer
	info, err := archive.WriteLayer(&raw, archive.None, archive.TarOptions{}, func(tw *archive.TarWriter) error {
		for _, h := range []*tar.Header{
			{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
			{Name: "a/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3, Uid: 1000, Gid: 50, ModTime: mtime,
				PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}},
			{Name: "a/" + long + "/g", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: mtime},
			{Name: "a/h", Typeflag: tar.TypeLink, Linkname: "a/f", ModTime: mtime},
			{Name: "a/s", Typeflag: tar.TypeSymlink, Linkname: "../" + long + "/x", Mode: 0o777, ModTime: mtime},
			{Name: "a/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime},
			{Name: "a/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime},
		} {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if h.Size > 0 {
				if _, err := tw.Write([]byte("abc")); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var hdrs []*tar.Header
	copied, err := archive.CopyLayer(&bytes.Buffer{}, archive.None, bytes.NewReader(raw.Bytes()), func(h *tar.Header) { hdrs = append(hdrs, h) })
	if err != nil {
		t.Fatal(err)
	}
	if copied.DiffID != info.DiffID {
		t.Fatalf("CopyLayer's diff ID %s, WriteLayer's %s", copied.DiffID, info.DiffID)
	}
	want, err := archive.IndexLayer(bytes.NewReader(raw.Bytes()), info.DiffID)
	if err != nil {
		t.Fatal(err)
	}
	got := headersIndex(copied.DiffID, hdrs)
	if len(got.Entries) != 7 || !reflect.DeepEqual(got, want) {
		t.Fatalf("index from the headers:\n%+v\nindex from the layer:\n%+v", got, want)
	}
}
