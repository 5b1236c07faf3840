//go:build linux && (amd64 || arm64)

package ptrace

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/testutil"
)

// rootOf extracts img into a new directory with Table.Apply and returns
// the directory and its table file.
func rootOf(t *testing.T, img v1.Image) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tab := NewTable()
	if _, err := tab.Apply(dir, rc); err != nil {
		t.Fatal(err)
	}
	file := TableFile(dir)
	if err := tab.Save(file); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

// run runs sh -c script in root and returns its output and exit code.
func run(t *testing.T, root, table, script string, binds ...Bind) (string, int) {
	t.Helper()
	var out bytes.Buffer
	res, err := Run(context.Background(), Config{
		Root: root, Table: table, Binds: binds,
		Args: []string{"/bin/sh", "-c", script},
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		Cwd:  "/",
	}, Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out.String())
	}
	return out.String(), res.Exit
}

func TestBusyboxShell(t *testing.T) {
	t.Parallel()
	root, table := rootOf(t, testutil.BusyboxImage(t))
	host := filepath.Join(filepath.Dir(filepath.Dir(root)), "host-secret")
	if err := os.WriteFile(host, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, root, table, `set -e
cd /tmp; pwd; /bin/pwd -P; id
readlink /proc/self/exe
for i in 1 2 3; do echo $i > /tmp/f$i; done; cat /tmp/f1 /tmp/f2 /tmp/f3
ln -s / /tmp/up; ln -s ../../.. /tmp/rel
ls /tmp/up/../../.. | tr '\n' ' '; echo
ls /tmp/rel/ | tr '\n' ' '; echo
cat /../../../`+filepath.Base(filepath.Dir(filepath.Dir(root)))+`/host-secret 2>/dev/null || echo escape-refused
printf '#!/bin/sh -e\necho script $0 $1\n' > /tmp/s; chmod +x /tmp/s; /tmp/s arg
echo x > /tmp/ro; chmod 444 /tmp/ro; echo y > /tmp/ro; cat /tmp/ro
mknod /tmp/nd c 1 3; stat -c '%F %t %T %U' /tmp/nd
mkdir /data; chown 1000:1000 /data; stat -c '%u:%g' /data
stat -L -c '%F' /dev/stdin /proc/self/fd/1 </tmp/f1 >/tmp/out; cat /tmp/out
`)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	want := []string{"/tmp\n/tmp\nuid=0(root) gid=0(root)", "\n/bin/busybox\n", "1\n2\n3\n",
		"bin dev etc home linuxrc proc root sbin sys tmp usr var \nbin dev etc home linuxrc proc root sbin sys tmp usr var \n", "escape-refused",
		"script /tmp/s arg\n", "\ny\n", "character special file 1 3 root\n", "1000:1000\n",
		"1000:1000\nregular file\nregular empty file\n"}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	tab, err := LoadTable(table)
	if err != nil {
		t.Fatal(err)
	}
	if o := ownerOf(t, tab, filepath.Join(root, "data")); o.UID != 1000 || o.GID != 1000 {
		t.Errorf("table: /data is %+v, want 1000:1000", o)
	}
	if o := ownerOf(t, tab, filepath.Join(root, "tmp/nd")); o.Type != unix.S_IFCHR || o.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("table: /tmp/nd is %+v, want the device 1,3", o)
	}
}

func ownerOf(t *testing.T, tab *Table, p string) Owner {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return tab.Owners[keyOf(&st)]
}

// TestDebian runs what package installation needs on one Debian root:
// useradd and chown recorded, dpkg -i with a maintainer script,
// apt-get install of a local package (apt drops to its _apt user).
func TestDebian(t *testing.T) {
	t.Parallel()
	root, table := rootOf(t, testutil.DebianImage(t))
	out, code := run(t, root, table, `set -e
mkdir /data; useradd app; chown app /data; stat -c '%u:%g %U' /data; stat -c '%U:%G %a' /etc/shadow
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/hello /tmp/pkg2/DEBIAN /tmp/pkg2/opt/h2
printf 'Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: k <k@example.com>\nDescription: test\n' > /tmp/pkg/DEBIAN/control
printf '#!/bin/sh\nset -e\nuseradd -r hellod\nchown hellod /usr/share/hello/data\n' > /tmp/pkg/DEBIAN/postinst
chmod 755 /tmp/pkg/DEBIAN/postinst
echo data > /tmp/pkg/usr/share/hello/data
dpkg-deb --root-owner-group --build /tmp/pkg /tmp/hello.deb >/dev/null
dpkg -i /tmp/hello.deb >/dev/null
dpkg -s hello | grep Status
stat -c '%U %a' /usr/share/hello/data
printf 'Package: h2\nVersion: 1.0\nArchitecture: all\nMaintainer: k <k@example.com>\nDescription: test\n' > /tmp/pkg2/DEBIAN/control
echo x > /tmp/pkg2/opt/h2/x
dpkg-deb --root-owner-group --build /tmp/pkg2 /tmp/h2.deb >/dev/null
apt-get install -y /tmp/h2.deb >/dev/null 2>&1
dpkg -s h2 | grep Status
readlink /proc/self/exe; perl -e 'print "perl $^X\n"'
`)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	want := "1000:0 app\nroot:shadow 640\nStatus: install ok installed\nhellod 644\nStatus: install ok installed\n/usr/bin/readlink\nperl /usr/bin/perl\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	tab, err := LoadTable(table)
	if err != nil {
		t.Fatal(err)
	}
	if o := ownerOf(t, tab, filepath.Join(root, "data")); o.UID != 1000 || o.GID != 0 {
		t.Errorf("table: /data is %+v, want 1000:0", o)
	}
	if o := ownerOf(t, tab, filepath.Join(root, "etc/shadow")); o.UID != 0 || o.GID != 42 {
		t.Errorf("table: /etc/shadow is %+v, want 0:42 (shadow)", o)
	}
}

// BenchmarkRun is the cost of one traced step that does nothing much:
// the tracer and stub start, the filter, one exec.
func BenchmarkRun(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	rc := mutate.Extract(testutil.BusyboxImage(b))
	tab := NewTable()
	if _, err := tab.Apply(dir, rc); err != nil {
		b.Fatal(err)
	}
	rc.Close()
	file := TableFile(dir)
	if err := tab.Save(file); err != nil {
		b.Fatal(err)
	}
	for _, script := range []string{"true", "for i in $(seq 200); do echo $i > /tmp/f; cat /tmp/f >/dev/null; done"} {
		b.Run(strings.Fields(script)[0], func(b *testing.B) {
			var tracer, tracee time.Duration
			for i := 0; i < b.N; i++ {
				res, err := Run(context.Background(), Config{Root: dir, Table: file, Args: []string{"/bin/sh", "-c", script}, Cwd: "/"}, Options{})
				if err != nil || res.Exit != 0 {
					b.Fatal(err, res)
				}
				tracer += res.TracerCPU
				tracee += res.TraceeCPU
			}
			// CPU, unlike wall time, does not grow with the machine's load.
			b.ReportMetric(float64(tracer.Microseconds())/1000/float64(b.N), "tracer-cpu-ms/op")
			b.ReportMetric(float64(tracee.Microseconds())/1000/float64(b.N), "tracee-cpu-ms/op")
		})
	}
}

// TestLayerOwners: the metadata-walk diff of a working copy gets the
// owners and devices the step recorded, and the layer extracted by
// ApplyLayer gives them back.
func TestLayerOwners(t *testing.T) {
	t.Parallel()
	root, table := rootOf(t, testutil.BusyboxImage(t))
	snap := filepath.Join(filepath.Dir(root), "snap")
	if _, err := WalkDiff(root, "", snap, nil, nil); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, root, table, `set -e; mkdir /data; echo x > /data/f; chown -R 1000:1000 /data; mknod /nd c 1 3; chown 0:50 /nd; rm /etc/group; chown 1000 /home/app`)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var layer bytes.Buffer
	if _, err := WalkDiff(root, snap, snap, nil, &layer); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(layer.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got[h.Name] = fmt.Sprintf("%c %d:%d %d,%d", h.Typeflag, h.Uid, h.Gid, h.Devmajor, h.Devminor)
	}
	want := map[string]string{
		"data/":         "5 1000:1000 0,0",
		"data/f":        "0 1000:1000 0,0",
		"nd":            "3 0:50 1,3",
		"etc/.wh.group": "0 0:0 0,0",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("layer entry %s = %q, want %q (layer: %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["home/app/"]; ok {
		t.Errorf("home/app is in the layer, but its owner did not change: %v", got)
	}
	// Applied onto a new working copy, the layer's owners are recorded.
	dir2 := filepath.Join(t.TempDir(), "rootfs")
	if _, err := ApplyLayer(dir2, bytes.NewReader(layer.Bytes())); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadTable(TableFile(dir2))
	if err != nil {
		t.Fatal(err)
	}
	// A device node where mknod works (root), else a placeholder.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir2, "nd"), &st); err != nil {
		t.Fatal(err)
	}
	tab.Fix(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Gid != 50 {
		t.Errorf("applied /nd: mode %o rdev %x gid %d", st.Mode, st.Rdev, st.Gid)
	}
	if o := ownerOf(t, tab, filepath.Join(dir2, "data/f")); o.UID != 1000 || o.GID != 1000 {
		t.Errorf("applied /data/f: %+v", o)
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	if err := Probe(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
}

// TestBinds: a read-only bind is served from its host path and refuses
// changes; a writable one takes them.
func TestBinds(t *testing.T) {
	t.Parallel()
	root, table := rootOf(t, testutil.BusyboxImage(t))
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("ro"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, root, table, `cat /ctx/f; echo x > /ctx/f || echo refused; rm /ctx/f || echo refused; mkdir /ctx/d || echo refused
echo made > /cache/new; cat /cache/new`,
		Bind{Guest: "/ctx", Host: ro, ReadOnly: true}, Bind{Guest: "/cache", Host: rw})
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !strings.HasPrefix(out, "ro") || strings.Count(out, "refused") != 3 || !strings.HasSuffix(out, "made\n") {
		t.Errorf("output:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(ro, "f")); err != nil || string(b) != "ro" {
		t.Errorf("read-only bind changed: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "made\n" {
		t.Errorf("writable bind: %q %v", b, err)
	}
}

// TestExecFails: a command that cannot be executed exits 127 with a
// message naming it.
func TestExecFails(t *testing.T) {
	t.Parallel()
	root, table := rootOf(t, testutil.BusyboxImage(t))
	var out bytes.Buffer
	res, err := Run(context.Background(), Config{Root: root, Table: table, Args: []string{"/no/such/program", "x"}, Cwd: "/"},
		Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Exit != 127 || !strings.Contains(out.String(), "/no/such/program") {
		t.Errorf("exit %d, output %q", res.Exit, out.String())
	}
}
