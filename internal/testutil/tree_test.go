package testutil

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// rawLayer writes the headers in the order given (no sorting, no implied
// parents), with data for regular files taken from hdr.Linkname == "" and
// the body map.
func rawLayer(t *testing.T, entries []*tar.Header, body map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body[h.Name]))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(body[h.Name])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := harness.LayerFromTar(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	names := make([]string, len(layers))
	img, err := harness.NewImage(v1.ConfigFile{}, layers, names)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageTreeAppliesWhiteouts(t *testing.T) {
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
	dir := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}
	}
	lower := rawLayer(t, []*tar.Header{
		dir("./", 0o755),
		dir("./a/", 0o755), dir("./a/b/", 0o700), reg("./a/b/c"), reg("./a/bb"),
		dir("./d/", 0o755), reg("./d/x"), dir("./d/sub/", 0o755), reg("./d/sub/z"),
		dir("./e/", 0o755), reg("./e/f"),
		{Name: "./s", Typeflag: tar.TypeSymlink, Linkname: "../a/bb", Mode: 0o777},
		{Name: "./tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "./suid", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 50},
		reg("./with space"),
	}, map[string]string{"./a/b/c": "c", "./a/bb": "bb", "./d/x": "x", "./d/sub/z": "z", "./e/f": "f", "./with space": "sp"})
	upper := rawLayer(t, []*tar.Header{
		// The layer's own entry comes before the opaque marker of its
		// directory: the marker must only hide the lower layer's entries.
		reg("d/y"),
		reg("d/.wh..wh..opq"),
		reg("a/.wh.b"),
		reg("e"), // a file replacing a directory
		{Name: "h", Typeflag: tar.TypeLink, Linkname: "d/y"},
		{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
	}, map[string]string{"d/y": "y", "e": "now a file"})

	got := ImageTree(t, imageOf(t, lower, upper))
	want := []string{
		"/a dir 0755 0:0 - - -",
		"/a/bb file 0644 0:0 2 " + sha("bb") + " -",
		"/d dir 0755 0:0 - - -",
		"/d/y file 0644 0:0 1 " + sha("y") + " -",
		"/dev/null char 0666 0:0 - - 1,3",
		"/e file 0644 0:0 10 " + sha("now a file") + " -",
		"/h hardlink 0644 0:0 1 " + sha("y") + " /d/y",
		"/s symlink 0777 0:0 - - ../a/bb",
		"/suid file 4755 1000:50 0 " + sha("") + " -",
		"/tmp dir 1777 0:0 - - -",
		`"/with space" file 0644 0:0 2 ` + sha("sp") + " -",
	}
	if d := lineDiff(want, got); d != "" {
		t.Errorf("ImageTree (-want +got):\n%s", d)
	}

	layerGot := LayerTree(t, upper)
	layerWant := []string{
		"/a/b whiteout 0644 0:0 - - -",
		"/d opaque 0644 0:0 - - -",
		"/d/y file 0644 0:0 1 " + sha("y") + " -",
		"/dev/null char 0666 0:0 - - 1,3",
		"/e file 0644 0:0 10 " + sha("now a file") + " -",
		"/h hardlink 0644 0:0 1 " + sha("y") + " /d/y",
	}
	if d := lineDiff(layerWant, layerGot); d != "" {
		t.Errorf("LayerTree (-want +got):\n%s", d)
	}
	if e := TreeEntry(got, "/with space"); !strings.HasPrefix(e, `"/with space" file`) {
		t.Errorf("TreeEntry(/with space) = %q", e)
	}
	if e := TreeEntry(got, "/a/b/c"); e != "" {
		t.Errorf("TreeEntry(/a/b/c) = %q, want none (whited out)", e)
	}
}

func TestLineDiff(t *testing.T) {
	if d := lineDiff([]string{"a", "b"}, []string{"a", "b"}); d != "" {
		t.Errorf("equal lists: diff %q", d)
	}
	d := lineDiff([]string{"a", "b", "c", "d"}, []string{"a", "c", "x", "d"})
	want := "@@ after line 1: a\n-b\n c\n+x"
	if d != want {
		t.Errorf("diff = %q, want %q", d, want)
	}
	if d := lineDiff(nil, []string{"new"}); d != "+new" {
		t.Errorf("diff from nothing = %q", d)
	}
}

func TestGoldenRoundTrip(t *testing.T) {
	t.Chdir(t.TempDir())
	*update = true
	Golden(t, "sub/x", []string{"one", "two"})
	*update = false
	Golden(t, "sub/x", []string{"one", "two"})
	ft := &fakeTB{TB: t}
	Golden(ft, "sub/x", []string{"one", "three"})
	if !ft.failed || !strings.Contains(ft.msg, "-two") || !strings.Contains(ft.msg, "+three") {
		t.Errorf("mismatch not reported as expected: failed=%v msg=%q", ft.failed, ft.msg)
	}
	ft = &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		Golden(ft, "missing", nil)
	}()
	if !ft.failed || !strings.Contains(ft.msg, "-update") {
		t.Errorf("missing golden not reported with the -update hint: %q", ft.msg)
	}
}

// fakeTB records failures instead of failing the real test. Fatal panics to
// stop the caller, as the real one stops the goroutine.
type fakeTB struct {
	testing.TB
	failed  bool
	skipped bool
	msg     string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.failed = true
	f.msg += fmt.Sprintf(format, args...)
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	panic("fatal")
}

func TestConfigSummary(t *testing.T) {
	cfg := v1.ConfigFile{Config: v1.Config{
		Env:          []string{"PATH=/bin", "A=1"},
		Cmd:          []string{},
		User:         "app",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}},
		Labels:       map[string]string{"z": "1", "a": "2"},
		Healthcheck:  &v1.HealthConfig{Test: []string{"CMD", "true"}},
	}}
	img, err := harness.NewImage(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := ConfigSummary(t, img)
	want := `{
  "Env": [
    "PATH=/bin",
    "A=1"
  ],
  "Cmd": [],
  "Entrypoint": null,
  "User": "app",
  "WorkingDir": "",
  "ExposedPorts": [
    "53/udp",
    "8080/tcp"
  ],
  "Volumes": null,
  "Labels": {
    "a": "2",
    "z": "1"
  },
  "StopSignal": "",
  "Healthcheck": {
    "Test": [
      "CMD",
      "true"
    ]
  },
  "OnBuild": null,
  "Shell": null,
  "History": []
}`
	if d := lineDiff(splitLines(want), splitLines(got)); d != "" {
		t.Errorf("ConfigSummary (-want +got):\n%s", d)
	}
}

func (f *fakeTB) Fatal(args ...any) {
	f.failed = true
	f.msg += fmt.Sprint(args...)
	panic("fatal")
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg += fmt.Sprintf(format, args...)
	panic("skip")
}

// TestRequireMissingProgram: a missing program fails the test with the
// package to install, except under -short where it skips.
func TestRequireMissingProgram(t *testing.T) {
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		RequireProgram(ft, "/nonexistent/bin/docker-registry", "docker-registry")
	}()
	if testing.Short() {
		if !ft.skipped || ft.failed {
			t.Errorf("under -short: skipped=%v failed=%v, want a skip", ft.skipped, ft.failed)
		}
	} else if !ft.failed || ft.skipped {
		t.Errorf("skipped=%v failed=%v, want a failure", ft.skipped, ft.failed)
	}
	for _, want := range []string{"/nonexistent/bin/docker-registry", "docker-registry", "sudo .ci/deps"} {
		if !strings.Contains(ft.msg, want) {
			t.Errorf("message %q lacks %q", ft.msg, want)
		}
	}
	ft = &fakeTB{TB: t}
	Require(ft, nil)
	if ft.failed || ft.skipped {
		t.Errorf("Require(nil) stopped the test: %q", ft.msg)
	}
}
