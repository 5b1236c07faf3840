package attest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/testutil"
)

// rpmDatabase builds a package with rpmbuild, installs it with rpm -i
// --justdb into a new database and returns rpmdb.sqlite.
func rpmDatabase(t *testing.T) []byte {
	t.Helper()
	for _, tool := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian's rpm package; .ci/deps installs it): %v", tool, err)
		}
	}
	dir := t.TempDir()
	spec := filepath.Join(dir, "hello.spec")
	testutil.Require(t, os.WriteFile(spec, []byte(`Name: kiln-hello
Version: 1.2.3
Release: 4.fc39
Epoch: 2
Summary: a test package
License: MIT
Vendor: Fedora Project
BuildArch: noarch
%description
test
%install
mkdir -p %{buildroot}/usr/share/kiln-hello
echo hello > %{buildroot}/usr/share/kiln-hello/hello.txt
%files
/usr/share/kiln-hello/hello.txt
`), 0o644))
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("rpmbuild", "--define", "_topdir "+filepath.Join(dir, "top"), "-bb", spec)
	rpms, _ := filepath.Glob(filepath.Join(dir, "top", "RPMS", "*", "*.rpm"))
	db := filepath.Join(dir, "db")
	run("rpm", append([]string{"--dbpath", db, "-i", "--justdb", "--nodeps", "--ignorearch", "--ignoreos"}, rpms...)...)
	b, err := os.ReadFile(filepath.Join(db, "rpmdb.sqlite"))
	testutil.Require(t, err)
	return b
}

// TestSBOMRPM: an image with rpm's SQLite database (where Fedora keeps it)
// lists its packages with rpm package URLs, and the files each owns.
func TestSBOMRPM(t *testing.T) {
	t.Parallel()
	db := rpmDatabase(t)
	img, err := mutate.AppendLayers(empty.Image, layer(t, map[string][]byte{
		"etc/os-release":                          []byte("ID=fedora\nVERSION_ID=39\n"),
		"usr/lib/sysimage/rpm/rpmdb.sqlite":       db,
		"usr/share/kiln-hello/hello.txt":          []byte("hello\n"),
		"var/lib/rpm/Packages.db":                 []byte("damaged: an error, not a package"),
		"usr/lib/sysimage/rpm/rpmdb.sqlite-shm":   make([]byte, 32768),
		"usr/lib/sysimage/rpm/rpmdb.sqlite-wal":   nil,
		"usr/lib/sysimage/rpm/not-rpmdb.sqlite":   []byte("x"),
		"usr/lib/sysimage/rpm/.rpm.lock":          nil,
		"usr/lib/sysimage/rpm/Packages.unrelated": nil,
	}))
	testutil.Require(t, err)
	doc, err := SBOM(img, SBOMOptions{Name: "registry.example.com/team/app:1", Created: time.Unix(0, 0), Tool: "kiln-test"})
	testutil.Require(t, err)
	want := "pkg:rpm/fedora/kiln-hello@1.2.3-4.fc39?arch=noarch&epoch=2&distro=fedora-39"
	if got := purls(doc); !got[want] {
		t.Errorf("no %s in %v", want, got)
	}
	var id string
	for _, p := range doc.Packages {
		if p.Name == "kiln-hello" {
			id = p.SPDXID
			if p.VersionInfo != "2:1.2.3-4.fc39" {
				t.Errorf("versionInfo %q", p.VersionInfo)
			}
		}
	}
	owns := false
	for _, r := range doc.Relationships {
		if r.Element == id && r.Type == "CONTAINS" {
			for _, f := range doc.Files {
				owns = owns || f.SPDXID == r.Related && f.FileName == "/usr/share/kiln-hello/hello.txt"
			}
		}
	}
	if !owns {
		t.Errorf("kiln-hello does not CONTAIN /usr/share/kiln-hello/hello.txt: %+v", doc.Files)
	}
	checkSPDX(t, doc)
}
