package build_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

var (
	sbOnce sync.Once
	sbVal  *sandbox.Sandbox
	sbErr  error
)

// runSandbox is this environment's sandbox (detected once); RUN tests
// skip where no isolation works.
func runSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sbOnce.Do(func() { sbVal, _, sbErr = sandbox.New(context.Background(), sandbox.Options{}) })
	if sbErr != nil {
		t.Fatal(sbErr)
	}
	if sbVal.Mode() == sandbox.ModeNone {
		t.Skipf("RUN cannot work here: %s", sbVal.Reason())
	}
	return sbVal
}

// runEnv is newEnv whose store's unpacked layers are removed through the
// sandbox (they may belong to subordinate ids).
func runEnv(t *testing.T) (*env, *sandbox.Sandbox) {
	t.Helper()
	sb := runSandbox(t)
	e := newEnv(t)
	t.Cleanup(func() {
		if err := sb.Remove(context.Background(), filepath.Join(e.store.Root(), "rootfs")); err != nil {
			t.Errorf("removing unpacked layers: %v", err)
		}
	})
	return e, sb
}

func withSandbox(sb *sandbox.Sandbox, log *bytes.Buffer) func(*build.Options) {
	return func(o *build.Options) {
		o.Isolation = build.Use(sb)
		if log != nil {
			o.Log = log
		}
	}
}

// owner is what a file made by uid:gid shows in the image: with only the
// caller mapped, every owner is root.
func owner(sb *sandbox.Sandbox, ids string) string {
	if sb.SingleMapping() {
		return "0:0"
	}
	return ids
}

func treeLine(t *testing.T, img v1.Image, p string) string {
	t.Helper()
	return testutil.TreeEntry(testutil.ImageTree(t, img), p)
}

func TestRunShellExecEnvAndArgs(t *testing.T) {
	e, sb := runEnv(t)
	var log bytes.Buffer
	img := e.mustBuild(t, `FROM {{REG}}/library/busybox
ARG TOKEN=secret-arg
ENV GREETING="hello world" PATH=/usr/bin:/bin
RUN echo "$GREETING/$TOKEN" > /shell.txt && echo to-the-log
RUN ["/bin/sh", "-c", "echo exec $0 $GREETING > /exec.txt", "zero"]
SHELL ["/bin/sh", "-e", "-c"]
RUN printf '%s' "$-" > /flags.txt
ENV TOKEN=from-env
RUN echo $TOKEN > /env-wins.txt
`, nil, withSandbox(sb, &log))
	tree := testutil.ImageTree(t, img)
	for p, content := range map[string]string{
		"/shell.txt":    "hello world/secret-arg\n",
		"/exec.txt":     "exec zero hello world\n",
		"/env-wins.txt": "from-env\n",
	} {
		if l := testutil.TreeEntry(tree, p); !strings.Contains(l, " "+sha256Hex(content)+" ") {
			t.Errorf("%s: %q, want content %q", p, l, content)
		}
	}
	if l := testutil.TreeEntry(tree, "/flags.txt"); l == "" || strings.Contains(l, " 0 ") {
		t.Errorf("SHELL -e not used: %s", l)
	}
	cfg, _ := img.ConfigFile()
	for _, kv := range cfg.Config.Env {
		if strings.Contains(kv, "secret-arg") {
			t.Errorf("a build arg reached the config: %s", kv)
		}
	}
	if !regexp.MustCompile(`(?m)^\[stage-0 4/9\] \d+\.\d{3} to-the-log$`).MatchString(log.String()) {
		t.Errorf("RUN output not in the log with its step prefix:\n%s", log.String())
	}
	var runs []string
	for _, h := range cfg.History {
		if strings.HasPrefix(h.CreatedBy, "RUN ") {
			runs = append(runs, h.CreatedBy)
			if h.EmptyLayer {
				t.Errorf("%s marked empty", h.CreatedBy)
			}
		}
	}
	// BuildKit's form: the ARGs in scope, the command line, "# buildkit".
	if len(runs) != 4 || runs[1] != `RUN |1 TOKEN=secret-arg /bin/sh -c echo exec $0 $GREETING > /exec.txt zero # buildkit` ||
		runs[3] != `RUN |1 TOKEN=from-env /bin/sh -e -c echo $TOKEN > /env-wins.txt # buildkit` {
		t.Errorf("history: %q", runs)
	}
}

func TestRunUserWorkdirAndOwners(t *testing.T) {
	e, sb := runEnv(t)
	img := e.mustBuild(t, `FROM {{REG}}/library/busybox
RUN echo extra:x:2000:app,nobody >> /etc/group && mkdir /srv && chown 1000:1000 /srv
USER app
WORKDIR /srv/work
RUN id > ids && touch mine && pwd > here
USER 4242:50
RUN touch /tmp/numeric
USER root
RUN chown 33:44 /srv/work/mine && chmod 4750 /srv/work/mine
`, nil, withSandbox(sb, nil))
	tree := testutil.ImageTree(t, img)
	ids := "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\n"
	if sb.SingleMapping() {
		ids = "uid=0(root) gid=0(root) groups=0(root)\n"
	}
	checks := map[string]string{
		"/srv/work/ids":  " " + owner(sb, "1000:1000") + " " + itoa(len(ids)) + " " + sha256Hex(ids),
		"/srv/work/here": " " + sha256Hex("/srv/work\n"),
		"/srv/work/mine": "file 4750 " + owner(sb, "33:44") + " 0 ",
		"/tmp/numeric":   "file 0644 " + owner(sb, "4242:50") + " ",
		"/srv":           "dir 0755 " + owner(sb, "1000:1000") + " ",
	}
	for p, want := range checks {
		if l := testutil.TreeEntry(tree, p); !strings.Contains(l, want) {
			t.Errorf("%s: %q, want %q", p, l, want)
		}
	}
}

func TestRunFailureNamesStepCommandAndCode(t *testing.T) {
	e, sb := runEnv(t)
	_, err := e.build(t, "FROM {{REG}}/library/busybox\nRUN true\nRUN echo about to fail && exit 3\n", nil, withSandbox(sb, nil))
	if err == nil {
		t.Fatal("a failing RUN did not fail the build")
	}
	for _, want := range []string{"Dockerfile:3", "RUN 3/3", `"/bin/sh -c 'echo about to fail && exit 3'"`, "exit code 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = e.build(t, "FROM {{REG}}/library/busybox\nUSER ghost\nRUN true\n", nil, withSandbox(sb, nil))
	if err == nil || !strings.Contains(err.Error(), "ghost") || !strings.Contains(err.Error(), "Dockerfile:3") {
		t.Errorf("unknown USER: %v", err)
	}
	_, err = e.build(t, "FROM {{REG}}/library/busybox\nRUN [\"/no/such/program\"]\n", nil, withSandbox(sb, nil))
	if err == nil || !strings.Contains(err.Error(), "/no/such/program") {
		t.Errorf("missing program: %v", err)
	}
}

// TestRunLayerContents: deletions become whiteouts, a directory emptied and
// remade becomes opaque, and COPY after RUN sees what RUN made.
func TestRunLayerContents(t *testing.T) {
	e, sb := runEnv(t)
	img := e.mustBuild(t, `FROM {{REG}}/library/busybox
RUN rm /etc/group && rm -rf /home/app && mkdir -p /var/tmp/d && ln -s /var/tmp/d /link && echo x > /var/tmp/d/f && ln /var/tmp/d/f /var/tmp/d/hard
COPY a.txt /var/tmp/d
COPY b.txt /link
`, map[string]file{"a.txt": {content: "a"}, "b.txt": {content: "b"}}, withSandbox(sb, nil))
	layers, _ := img.Layers()
	run := testutil.LayerTree(t, layers[1])
	for _, want := range []string{"/etc/group whiteout", "/home/app whiteout", "/link symlink 0777 0:0 - - /var/tmp/d", "/var/tmp/d/hard hardlink"} {
		found := false
		for _, l := range run {
			if strings.HasPrefix(l, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("RUN layer lacks %q:\n%s", want, strings.Join(run, "\n"))
		}
	}
	tree := testutil.ImageTree(t, img)
	for _, p := range []string{"/var/tmp/d/a.txt", "/var/tmp/d/b.txt"} {
		if testutil.TreeEntry(tree, p) == "" {
			t.Errorf("COPY after RUN: no %s in\n%s", p, strings.Join(tree, "\n"))
		}
	}
	if testutil.TreeEntry(tree, "/etc/group") != "" || testutil.TreeEntry(tree, "/home/app") != "" {
		t.Error("deleted files are still in the image")
	}
}

func TestRunMounts(t *testing.T) {
	e, sb := runEnv(t)
	if !sb.Overlay() {
		t.Skip("bind mounts of stages need overlay")
	}
	df := `FROM {{REG}}/library/busybox AS tools
RUN mkdir /out && echo from-stage > /out/tool
FROM {{REG}}/library/busybox
RUN --mount=type=bind,source=ctx,target=/ctx cat /ctx/in.txt > /copied && ! touch /ctx/new 2>/dev/null
RUN --mount=type=bind,source=ctx,target=/ctx,rw echo scribble >> /ctx/in.txt && cat /ctx/in.txt > /rw.txt
RUN --mount=from=tools,source=/out,target=/tools cp /tools/tool /tool
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/y && test -f /scratch/y
RUN --mount=type=cache,target=/cache,id=c1 echo run >> /cache/log && cp /cache/log /cachelog
RUN --network=none sh -c '! ping -c1 -W1 127.0.0.2 >/dev/null 2>&1 || cat /proc/net/dev > /netdev'
`
	files := map[string]file{"ctx/in.txt": {content: "from-context\n"}}
	img := e.mustBuild(t, df, files, withSandbox(sb, nil))
	tree := testutil.ImageTree(t, img)
	for p, content := range map[string]string{
		"/copied": "from-context\n", "/rw.txt": "from-context\nscribble\n", "/tool": "from-stage\n", "/cachelog": "run\n",
	} {
		if l := testutil.TreeEntry(tree, p); !strings.Contains(l, sha256Hex(content)) {
			t.Errorf("%s: %q, want %q", p, l, content)
		}
	}
	for _, p := range []string{"/ctx", "/tools", "/scratch", "/cache"} {
		if l := testutil.TreeEntry(tree, p); l != "" {
			t.Errorf("mount point %s reached the image: %s", p, l)
		}
	}
	// The cache survives into the next build.
	img = e.mustBuild(t, df, files, withSandbox(sb, nil))
	if l := treeLine(t, img, "/cachelog"); !strings.Contains(l, sha256Hex("run\nrun\n")) {
		t.Errorf("cache mount did not persist: %s", l)
	}
}

// TestRunCopyFromStageLayer: COPY --from a stage whose last layer a RUN
// step made finds its files (a directory, a symlink, a file the step
// removed from the base) the same way whether that layer's index came
// from the headers it was written with (no --timestamp: the sandbox's
// diff taken as it is) or from reading the layer (--timestamp rewrote it).
func TestRunCopyFromStageLayer(t *testing.T) {
	e, sb := runEnv(t)
	df := `FROM {{REG}}/library/busybox AS gen
RUN mkdir -p /out/d && echo hi > /out/d/f && ln -s d/f /out/l && cp /etc/passwd /out/p && rm /etc/passwd
FROM scratch
COPY --from=gen /out/ /o/
COPY --from=gen /out/l /e/
COPY --from=gen /etc/ /etc2/
`
	for _, ts := range []bool{false, true} {
		img := e.mustBuild(t, df, nil, withSandbox(sb, nil), func(o *build.Options) {
			if !ts {
				o.Timestamp = nil
			}
		})
		tree := testutil.ImageTree(t, img)
		if l := testutil.TreeEntry(tree, "/o/d/f"); !strings.Contains(l, sha256Hex("hi\n")) {
			t.Errorf("timestamp %v: /o/d/f is %q in\n%s", ts, l, strings.Join(tree, "\n"))
		}
		if l := testutil.TreeEntry(tree, "/o/l"); !strings.Contains(l, "symlink") || !strings.HasSuffix(l, "d/f") {
			t.Errorf("timestamp %v: /o/l is %q", ts, l)
		}
		// A symlink named as the source is followed (to the file the
		// step made); the step's whiteout hides the base's /etc/passwd.
		if l := testutil.TreeEntry(tree, "/e/l"); !strings.Contains(l, " file ") || !strings.Contains(l, sha256Hex("hi\n")) {
			t.Errorf("timestamp %v: /e/l is %q", ts, l)
		}
		if l := testutil.TreeEntry(tree, "/etc2/passwd"); l != "" {
			t.Errorf("timestamp %v: the file the step removed was copied: %q", ts, l)
		}
		if testutil.TreeEntry(tree, "/etc2/group") == "" || testutil.TreeEntry(tree, "/o/p") == "" {
			t.Errorf("timestamp %v: /etc2/group or /o/p missing in\n%s", ts, strings.Join(tree, "\n"))
		}
	}
}

// TestRunSecondBuildUnpacksNothing: layers are unpacked once per store.
func TestRunSecondBuildUnpacksNothing(t *testing.T) {
	e, sb := runEnv(t)
	if !sb.Overlay() {
		t.Skip("working copies are made per build")
	}
	var first, second bytes.Buffer
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nRUN echo one > /1\nRUN echo two > /2\n", nil, withSandbox(sb, &first))
	if !strings.Contains(first.String(), "unpacked 1 layer") {
		t.Errorf("first build did not unpack the base:\n%s", first.String())
	}
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nRUN echo other > /3\n", nil, withSandbox(sb, &second))
	if strings.Contains(second.String(), "unpacked") {
		t.Errorf("second build unpacked again:\n%s", second.String())
	}
}

// TestRunModesAgree builds the same Dockerfile in every mode this machine
// allows, on overlay and on a working copy, and compares the trees (chroot
// mode needs root).
func TestRunModesAgree(t *testing.T) {
	e, sb := runEnv(t)
	df := `FROM {{REG}}/library/busybox
RUN mkdir -p /a/b && echo 1 > /a/b/f && echo 1 > /a/b/g && ln /a/b/f /a/h && ln -s b /a/s && chmod 2755 /a/b && rm -rf /home /etc/group && mkdir /home && touch /home/z
RUN echo 2 >> /a/b/g && rm /a/s && chown 1000:50 /a/b/g /a/b && mkfifo /a/p && rm -rf /var/tmp && mkdir /var/tmp
`
	want := testutil.ImageTree(t, e.mustBuild(t, df, nil, withSandbox(sb, nil)))
	// The same mode on a working copy with a metadata-walk diff.
	copyMode, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sb.Mode(), NoOverlay: true})
	if err != nil {
		t.Fatal(err)
	}
	if copyMode.Overlay() {
		t.Fatal("NoOverlay still uses overlay")
	}
	got := testutil.ImageTree(t, e.mustBuild(t, df, nil, withSandbox(copyMode, nil)))
	if d := strings.Join(diffLines(want, got), "\n"); d != "" {
		t.Errorf("%s mode on a working copy differs from overlay:\n%s", sb.Mode(), d)
	}
	if os.Geteuid() != 0 {
		return // chroot mode needs root
	}
	chroot, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModeChroot})
	if err != nil {
		t.Fatal(err)
	}
	got = testutil.ImageTree(t, e.mustBuild(t, df, nil, withSandbox(chroot, nil)))
	if d := strings.Join(diffLines(want, got), "\n"); d != "" {
		t.Errorf("chroot mode differs from %s mode:\n%s", sb.Mode(), d)
	}
}

// TestRunNoIsolation: with no sandbox RUN fails saying what to do, and a
// build without RUN still works.
func TestRunNoIsolation(t *testing.T) {
	e := newEnv(t)
	none, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModeNone})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.build(t, "FROM {{REG}}/library/busybox\nRUN true\n", nil, withSandbox(none, nil))
	if err == nil || !strings.Contains(err.Error(), "kiln doctor") || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Errorf("RUN without isolation: %v", err)
	}
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nCOPY a /a\n", map[string]file{"a": {content: "a"}}, withSandbox(none, nil))
}

func diffLines(a, b []string) []string {
	in := map[string]int{}
	for _, l := range a {
		in[l]++
	}
	for _, l := range b {
		in[l]--
	}
	var out []string
	for l, n := range in {
		switch {
		case n > 0:
			out = append(out, "-"+l)
		case n < 0:
			out = append(out, "+"+l)
		}
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
