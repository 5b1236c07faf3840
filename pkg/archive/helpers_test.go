package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"sync"
	"testing"
	"time"
)

// tent describes one entry of a tar stream built by a test.
type tent struct {
	name   string
	typ    byte
	body   string
	link   string
	mode   int64
	uid    int
	gid    int
	pax    map[string]string
	major  int64
	minor  int64
	mtime  time.Time
	format tar.Format
}

func file(name, body string) tent { return tent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func dir(name string) tent        { return tent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) tent {
	return tent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) tent {
	return tent{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}
func whiteout(name string) tent { return file(name, "") }

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// mkTar builds a raw tar stream with archive/tar (not TarWriter, so that
// tests can make the hostile streams TarWriter would refuse).
func mkTar(t testing.TB, entries ...tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mt := e.mtime
		if mt.IsZero() {
			mt = testTime
		}
		h := &tar.Header{
			Name:       e.name,
			Typeflag:   e.typ,
			Linkname:   e.link,
			Mode:       e.mode,
			Uid:        e.uid,
			Gid:        e.gid,
			ModTime:    mt,
			PAXRecords: e.pax,
			Devmajor:   e.major,
			Devminor:   e.minor,
			Format:     e.format,
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("mkTar %q: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatalf("mkTar %q: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// countingLayers returns openers over in-memory layers and counts, per
// layer, how often each was opened.
type countingLayers struct {
	mu     sync.Mutex
	data   [][]byte
	counts []int
}

func newCountingLayers(layers ...[]byte) *countingLayers {
	return &countingLayers{data: layers, counts: make([]int, len(layers))}
}

func (c *countingLayers) openers() []Opener {
	ops := make([]Opener, len(c.data))
	for i := range c.data {
		ops[i] = func() (io.ReadCloser, error) {
			c.mu.Lock()
			c.counts[i]++
			c.mu.Unlock()
			return io.NopCloser(bytes.NewReader(c.data[i])), nil
		}
	}
	return ops
}

func (c *countingLayers) opened() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.counts...)
}

// readTar lists a tar stream's headers and contents.
func readTar(t testing.TB, data []byte) ([]*tar.Header, map[string]string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var hdrs []*tar.Header
	contents := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, contents
		}
		if err != nil {
			t.Fatalf("readTar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("readTar %q: %v", h.Name, err)
		}
		hdrs = append(hdrs, h)
		contents[h.Name] = string(b)
	}
}
