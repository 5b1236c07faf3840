package build

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"
)

// fmtLayerHasher is layerHasher.add as it was written with fmt: the step
// cache's keys are made of these lines, so the strconv form must give the
// same bytes.
func fmtLayerHasher(h *tar.Header, digest string, ts *time.Time) (content, exact string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\x00%q %c %o %d %d %d %q %d %d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size, h.Linkname, h.Devmajor, h.Devminor)
	if len(h.PAXRecords) > 0 {
		keys := make([]string, 0, len(h.PAXRecords))
		for key := range h.PAXRecords {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			fmt.Fprintf(&b, " %q=%q", key, h.PAXRecords[key])
		}
	}
	if digest != "" {
		b.WriteString(" sha256:" + digest)
	}
	b.WriteByte('\n')
	var mtime int64
	switch {
	case ts != nil:
		mtime = ts.Unix()
	case !h.ModTime.IsZero():
		mtime = h.ModTime.Unix()
	}
	return b.String(), b.String() + fmt.Sprintf("mtime %d\n", mtime)
}

// TestLayerHasherLine: the keys of COPY/ADD/WORKDIR layers are unchanged
// by the strconv form of layerHasher.add.
func TestLayerHasherLine(t *testing.T) {
	t.Parallel()
	ts := time.Unix(1234567890, 0)
	hdrs := []*tar.Header{
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "app/a b\t\"c\"\n", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 50, Size: 12, ModTime: time.Unix(1700000000, 5)},
		{Name: "app/ünï\x01\xff", Typeflag: tar.TypeSymlink, Linkname: "../x y/\\z", Mode: 0o777},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "odd", Typeflag: 0xC8, Mode: -1, Uid: -2, Gid: 1 << 40, Size: 1 << 62},
		{Name: "x", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.user.b": "2\x00", "SCHILY.xattr.user.a": "é"}},
	}
	sum := func(s string) string { h := sha256.New(); io.WriteString(h, s); return fmt.Sprintf("%x", h.Sum(nil)) }
	for _, stamp := range []*time.Time{nil, &ts} {
		var content, exact strings.Builder
		k := newLayerHasher()
		for i, h := range hdrs {
			digest := ""
			if i%2 == 1 {
				digest = strings.Repeat("ab", 32)
			}
			k.add(h, digest, stamp)
			c, e := fmtLayerHasher(h, digest, stamp)
			content.WriteString(c)
			exact.WriteString(e)
		}
		got := k.sum()
		if got.content != sum(content.String()) || got.exact != sum(exact.String()) {
			t.Errorf("timestamp %v: keys %+v, the fmt form gives content %s exact %s", stamp != nil, got, sum(content.String()), sum(exact.String()))
		}
	}
}

// BenchmarkLayerHasher: one java-layers-sized layer's keys (700 entries).
func BenchmarkLayerHasher(b *testing.B) {
	h := &tar.Header{Name: "BOOT-INF/lib/spring-core-6.1.2.jar", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 20, ModTime: time.Unix(1700000000, 0)}
	digest := strings.Repeat("ab", 32)
	b.Run("strconv", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			k := newLayerHasher()
			for j := 0; j < 700; j++ {
				k.add(h, digest, nil)
			}
			k.sum()
		}
	})
	b.Run("fmt", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			c, e := sha256.New(), sha256.New()
			for j := 0; j < 700; j++ {
				cl, el := fmtLayerHasher(h, digest, nil)
				io.WriteString(c, cl)
				io.WriteString(e, el)
			}
		}
	})
}
