package pods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// workload is one build every cell runs.
type workload struct {
	name       string
	dockerfile string // {{REG}} is the registry
	files      map[string]string
	run        bool // it has RUN steps
	cache      bool // it has a RUN --mount=type=cache step
	debian     bool // on the Debian base
}

var workloads = []workload{
	{name: "copy", dockerfile: "FROM {{REG}}/library/busybox:pods\nCOPY --chown=1000:1000 a /a\nCOPY a /etc/a\n",
		files: map[string]string{"a": "A\n"}},
	{name: "busybox-run", run: true, dockerfile: "FROM {{REG}}/library/busybox:pods\n" +
		// Debian's busybox-static has no adduser: add the user by hand.
		"RUN echo web:x:1234:1234::/home/web:/bin/sh >> /etc/passwd && echo web:x:1234: >> /etc/group && " +
		"mkdir -p /home/web /data && echo hi > /data/f && chown -R web:web /data /home/web && chmod 0640 /data/f\n"},
	{name: "debian-run", run: true, debian: true, dockerfile: "FROM {{REG}}/library/debian:pods\n" +
		"RUN useradd -m -u 1234 web && mkdir /data && echo hi > /data/f && chown -R web:web /data && apt-get --version >/data/apt\n"},
	{name: "cache", run: true, cache: true, dockerfile: "FROM {{REG}}/library/busybox:pods\n" +
		"RUN --mount=type=cache,target=/cache echo x >> /cache/log && cp /cache/log /log\n"},
}

// cell is one set of container settings.
type cell struct {
	name string
	args []string // docker run options
	// modes are the isolation modes accepted here; the first is what kiln
	// detects today, the others what the modes in progress give (root in
	// a user namespace where seccomp allows one).
	modes []sandbox.Mode
	// level is the Pod Security Standards level doctor must name.
	level string
	// advice must all appear in kiln doctor's output.
	advice []string
}

// ptraceLanded reports whether kiln has the ptrace mode (RUN with nothing
// allowed); the cells that cannot RUN without it expect it once it exists.
func ptraceLanded() bool {
	_, err := sandbox.ParseMode("ptrace")
	return err == nil
}

func cells() []cell {
	noRun := []sandbox.Mode{sandbox.ModeNone}
	if ptraceLanded() {
		noRun = []sandbox.Mode{"ptrace"}
	}
	unconfined := "seccompProfile: {type: Unconfined}"
	emptyDir := "put the store and TMPDIR on an emptyDir volume"
	return []cell{
		{name: "root", modes: []sandbox.Mode{sandbox.ModeChroot, sandbox.ModeUserns}, level: "baseline",
			advice: []string{emptyDir, "KILN_ROOT", unconfined}},
		{name: "uid1000", args: []string{"--user", "1000:1000"}, modes: noRun, level: "baseline",
			advice: []string{"[LIMITS] user namespaces", unconfined, "/etc/subuid"}},
		{name: "uid1000-restricted", args: []string{"--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"},
			modes: noRun, level: "restricted", advice: []string{"allowPrivilegeEscalation: true", "add: [SETUID, SETGID]", unconfined}},
		{name: "root-capdrop", args: []string{"--cap-drop", "ALL"}, modes: noRun, level: "baseline",
			advice: []string{"add: [CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID, SYS_CHROOT, MKNOD]"}},
		{name: "root-unconfined", args: []string{"--security-opt", "seccomp=unconfined"}, modes: []sandbox.Mode{sandbox.ModeChroot, sandbox.ModeUserns},
			level: "privileged", advice: []string{emptyDir}},
		{name: "uid1000-unconfined", args: []string{"--user", "1000:1000", "--security-opt", "seccomp=unconfined"}, modes: []sandbox.Mode{sandbox.ModeUserns},
			level: "privileged", advice: []string{"/etc/subuid", "newuidmap", emptyDir}},
		{name: "nopasswd-readonly", args: []string{"--user", "4242:4242", "--read-only", "--tmpfs", "/kiln:rw,exec,mode=1777", "-e", "TMPDIR=/kiln"},
			modes: noRun, level: "baseline", advice: []string{"store: /kiln/kiln-4242 (from TMPDIR)", unconfined}},
	}
}

// fixture is what every cell shares.
type fixture struct {
	d     *testutil.Docker
	reg   string
	image string // kiln + busybox
	ctx   string // the workloads' contexts, one directory each
	host  map[string][]string
	kiln  string
	// hostStore is the store of kiln on the host.
	hostStore string
}

// TestPodMatrix runs kiln in containers with the settings of real pods and
// checks, in each, the mode detected, doctor's advice and every workload.
func TestPodMatrix(t *testing.T) {
	testutil.SkipIfShort(t)
	f := setup(t)
	var rows []string
	var mu sync.Mutex
	t.Run("cells", func(t *testing.T) {
		for _, c := range cells() {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				row := f.runCell(t, c)
				mu.Lock()
				rows = append(rows, row)
				mu.Unlock()
			})
		}
	})
	slices.Sort(rows)
	t.Logf("setting | mode | copy | busybox-run | debian-run | cache | time\n%s", strings.Join(rows, "\n"))
}

func setup(t *testing.T) *fixture {
	f := setupImage(t)
	testutil.PushImage(t, f.reg+"/library/debian:pods", testutil.DebianImage(t))
	for _, w := range workloads {
		dir := filepath.Join(f.ctx, w.name)
		files := map[string]string{"Dockerfile": strings.ReplaceAll(w.dockerfile, "{{REG}}", f.reg)}
		for k, v := range w.files {
			files[k] = v
		}
		writeFiles(t, dir, files)
	}
	// Readable by the containers' non-root users.
	if err := exec.Command("chmod", "-R", "a+rX", f.ctx).Run(); err != nil {
		t.Fatal(err)
	}
	// The reference: each workload built by kiln on the host (root or
	// userns mode: full owners).
	for _, w := range workloads {
		dest := filepath.Join(t.TempDir(), w.name)
		f.hostKiln(t, "--root", f.hostStore, "build", "-q", "-o", "type=oci,dest="+dest, filepath.Join(f.ctx, w.name))
		f.host[w.name] = testutil.ImageTree(t, ociImage(t, dest))
	}
	return f
}

// setupImage starts the registry (with busybox as library/busybox:pods
// and :latest) and makes the image of busybox and the static kiln, built
// by kiln (COPY only) and loaded into the shared dockerd.
func setupImage(t testing.TB) *fixture {
	d := testutil.SharedDocker(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:pods", testutil.BusyboxImage(t))
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	f := &fixture{d: d, reg: reg, kiln: testutil.KilnBinary(t), ctx: t.TempDir(), host: map[string][]string{}, hostStore: t.TempDir()}
	imgCtx := t.TempDir()
	data, err := os.ReadFile(f.kiln)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, imgCtx, map[string]string{"Dockerfile": "FROM " + reg + "/library/busybox:pods\nCOPY --chmod=0755 kiln /usr/local/bin/kiln\n", "kiln": string(data)})
	f.image = "kiln-pods:" + randomHex(4)
	tarball := filepath.Join(t.TempDir(), "image.tar")
	f.hostKiln(t, "--root", f.hostStore, "build", "-q", "-t", f.image, "-o", "type=docker,dest="+tarball, imgCtx)
	if out := d.Load(t, tarball); !strings.Contains(out, f.image) {
		t.Fatalf("docker load: %s", out)
	}
	t.Cleanup(func() { _, _ = d.TryDocker(context.Background(), "", "rmi", "-f", f.image) })
	return f
}

func (f *fixture) hostKiln(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, f.kiln, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kiln %s on the host: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var isolationLine = regexp.MustCompile(`(?m)^isolation: (\S+)`)

// runCell starts a container with c's settings and runs doctor and the
// workloads in it; it returns the cell's row of the summary table.
func (f *fixture) runCell(t *testing.T, c cell) string {
	started := time.Now()
	out := t.TempDir()
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	name := "kiln-pods-" + c.name + "-" + randomHex(4)
	args := []string{"run", "-d", "--name", name, "--network", "host", "-v", f.ctx + ":/ctx:ro", "-v", out + ":/out"}
	args = append(append(args, c.args...), f.image, "/bin/sleep", "900")
	t.Cleanup(func() { _, _ = f.d.TryDocker(context.Background(), "", "rm", "-f", name) })
	// runc's exec of /bin/sleep sometimes failed with "permission denied"
	// (or, looked up by PATH, "not found") in a random cell, as root and
	// not, on a machine with several dockerds at once (cause not found;
	// the same container started again works). One more try, said.
	if out, err := f.d.TryDocker(context.Background(), "", args...); err != nil {
		t.Logf("docker run failed, once more: %v\n%s", err, out)
		_, _ = f.d.TryDocker(context.Background(), "", "rm", "-f", name)
		f.d.Docker(t, args...)
	}
	exec := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return f.d.TryDocker(ctx, "", append([]string{"exec", name}, args...)...)
	}

	doctor, err := exec("kiln", "doctor")
	if err != nil {
		t.Fatalf("kiln doctor in %s: %v", c.name, err)
	}
	t.Logf("kiln doctor in %s:\n%s", c.name, doctor)
	m := isolationLine.FindStringSubmatch(doctor)
	if m == nil || !slices.Contains(c.modes, sandbox.Mode(m[1])) {
		t.Fatalf("%s: kiln doctor detected %v, want one of %v:\n%s", c.name, m, c.modes, doctor)
	}
	mode := sandbox.Mode(m[1])
	if want := "pod security level of these settings: " + c.level + " "; !strings.Contains(doctor, want) {
		t.Errorf("%s: doctor does not say %q:\n%s", c.name, want, doctor)
	}
	for _, a := range c.advice {
		if !strings.Contains(doctor, a) {
			t.Errorf("%s: doctor lacks the advice %q:\n%s", c.name, a, doctor)
		}
	}
	if strings.Contains(doctor, "[ok    ] user namespaces") && mode == sandbox.ModeNone {
		t.Errorf("%s: no mode works, yet user namespaces are labelled ok:\n%s", c.name, doctor)
	}
	single := strings.Contains(doctor, "only uid ")
	row := []string{c.name + " (" + strings.Join(c.args, " ") + ")", string(mode)}
	if slices.Contains(c.args, "--read-only") {
		// Nowhere to write but the volume, and TMPDIR not pointing there:
		// a clear error that says how to give kiln a place.
		if out, err := exec("env", "-u", "TMPDIR", "kiln", "images"); err == nil || !strings.Contains(err.Error(), "set KILN_ROOT or --root") {
			t.Errorf("%s: kiln with no writable place: %v\n%s", c.name, err, out)
		}
	}
	for _, w := range workloads {
		row = append(row, f.runWorkload(t, c, mode, single, exec, out, w))
	}
	row = append(row, time.Since(started).Round(time.Second).String())
	return strings.Join(row, " | ")
}

// runWorkload builds w in the container and checks the outcome this mode
// must give: the host's tree, or a clear refusal.
func (f *fixture) runWorkload(t *testing.T, c cell, mode sandbox.Mode, single bool, exec func(...string) (string, error), hostOut string, w workload) (res string) {
	started := time.Now()
	out, err := exec("sh", "-c", "kiln build -o type=oci,dest=/out/"+w.name+" /ctx/"+w.name+" 2>&1")
	took := time.Since(started).Round(100 * time.Millisecond)
	ok, refusal := expectation(mode, single, w)
	switch {
	case ok && err != nil:
		t.Errorf("%s/%s: build failed in %s mode: %v", c.name, w.name, mode, err)
		return "FAIL"
	case ok:
		got := testutil.ImageTree(t, ociImage(t, filepath.Join(hostOut, w.name)))
		want := f.host[w.name]
		if single && w.run {
			// Only the caller is mapped: the build says so, and every
			// file the step made belongs to root.
			if !strings.Contains(out, "warning: only uid ") {
				t.Errorf("%s/%s: no warning that only one uid is mapped:\n%s", c.name, w.name, out)
			}
			if slices.Equal(got, want) && !w.cache {
				t.Errorf("%s/%s: the step's owners survived a single-uid map?", c.name, w.name)
			}
			got, want = collapse(got), collapse(want)
			defer func() { res += " (owners: root)" }()
		}
		if d := treeDiff(want, got); d != "" {
			t.Errorf("%s/%s: the image built in the container (%s mode) differs from the host's:\n%s\nbuild log:\n%s", c.name, w.name, mode, d, out)
			return "FAIL (tree)"
		}
		return fmt.Sprintf("ok %s", took)
	case err == nil:
		t.Errorf("%s/%s: build succeeded in %s mode, want it refused (%q):\n%s", c.name, w.name, mode, refusal, out)
		return "FAIL"
	case !strings.Contains(err.Error(), refusal):
		t.Errorf("%s/%s: build failed in %s mode without saying %q: %v", c.name, w.name, mode, refusal, err)
		return "FAIL"
	}
	return "refused (as expected)"
}

// treeDiff lists the lines only one of two trees has ("" when equal).
func treeDiff(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// expectation is what a build of w must do in mode: succeed with the
// host's tree (ok), or fail saying refusal.
func expectation(mode sandbox.Mode, single bool, w workload) (ok bool, refusal string) {
	switch {
	case !w.run:
		return true, ""
	case mode == sandbox.ModeNone:
		return false, "RUN needs an isolation mode, and none works here"
	}
	return true, ""
}

// collapse gives every entry of a tree root's owners, as a sandbox that
// maps only the caller does.
func collapse(tree []string) []string {
	out := make([]string, len(tree))
	for i, l := range tree {
		f := strings.Fields(l)
		if len(f) > 3 {
			f[3] = "0:0"
		}
		out[i] = strings.Join(f, " ")
	}
	return out
}

func ociImage(t testing.TB, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read OCI layout %s: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) == 0 {
		t.Fatalf("%s/index.json: %v, %d manifests", dir, err, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
