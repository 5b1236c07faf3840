package build_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/registry"
)

func TestMetadataInstructions(t *testing.T) {
	e := newEnv(t)
	img := e.mustBuild(t, `ARG BASE={{REG}}/library/busybox
FROM ${BASE}
ARG VERSION=1.0
ARG UNSET
ENV APP_VERSION=$VERSION HOME_DIR=/srv PATH=/app/bin:$PATH
ENV UNSET_SEEN=x${UNSET}x
LABEL org.opencontainers.image.version=$VERSION "quoted key"="a b"
MAINTAINER someone@example.com
EXPOSE 80 53/udp 8000-8002
USER 1000:1000
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
CMD echo $APP_VERSION
ENTRYPOINT ["/bin/tini", "--"]
VOLUME /data /cache
VOLUME ["/logs"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD wget -q localhost || exit 1
ONBUILD COPY . /app
`, nil, func(o *build.Options) {
		o.BuildArgs = map[string]string{"VERSION": "2.5"}
		o.Labels = map[string]string{"from-cli": "yes"}
	})
	testutil.GoldenString(t, "metadata.config", testutil.ConfigSummary(t, img))
	// Metadata only: no layer was added to the base.
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Errorf("%d layers, want only the base's", len(layers))
	}
	cfg, _ := img.ConfigFile()
	if cfg.Author != "someone@example.com" {
		t.Errorf("author = %q", cfg.Author)
	}
}

func TestEntrypointResetsInheritedCmd(t *testing.T) {
	e := newEnv(t)
	img := e.mustBuild(t, "FROM {{REG}}/library/busybox\nENTRYPOINT [\"/bin/sh\"]\n", nil)
	cfg, _ := img.ConfigFile()
	if cfg.Config.Cmd != nil {
		t.Errorf("Cmd = %v, want none (ENTRYPOINT resets the base's CMD)", cfg.Config.Cmd)
	}
	img = e.mustBuild(t, "FROM {{REG}}/library/busybox\nCMD [\"x\"]\nENTRYPOINT [\"/bin/sh\"]\n", nil)
	cfg, _ = img.ConfigFile()
	if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "x" {
		t.Errorf("Cmd = %v, want [x]", cfg.Config.Cmd)
	}
}

var copyContext = map[string]file{
	"app/main.sh":           {content: "#!/bin/sh\necho hi\n", mode: 0o755},
	"app/conf/app.yml":      {content: "port: 8080\n"},
	"app/conf/secret.key":   {content: "hunter2\n"},
	"app/debug.log":         {content: "noise\n"},
	"app/link":              {link: "main.sh"},
	"app/outside":           {link: "../../../etc/passwd"},
	"lib/a.jar":             {content: "AAAA"},
	"lib/b.jar":             {content: "BBBB"},
	"lib/readme.txt":        {content: "docs"},
	"top-link":              {link: "lib/a.jar"},
	"empty/":                {dir: true},
	"build/out/keep.txt":    {content: "kept by an exception"},
	"build/out/drop.txt":    {content: "dropped"},
	".dockerignore":         {content: "**/*.log\nbuild\n!build/out/keep.txt\n"},
	"weird name/with space": {content: "space"},
}

func TestCopy(t *testing.T) {
	e := newEnv(t)
	img := e.mustBuild(t, `FROM {{REG}}/library/busybox
WORKDIR /srv
COPY app/ ./app/
COPY lib/*.jar /opt/lib/
COPY top-link /opt/followed.jar
COPY --chmod=0600 lib/readme.txt README
COPY --chown=app:staff --chmod=u+x,go-rwx lib/a.jar /home/app/a.jar
COPY --chown=1234 lib/b.jar /numeric/
COPY --exclude=*.yml app/conf /conf/
COPY build /build/
COPY ["weird name/with space", "/weird/"]
COPY empty /empty/
COPY <<EOF <<OTHER /here/
hello
EOF
other
OTHER
COPY --parents app/conf/app.yml /parents/
`, copyContext)
	testutil.Golden(t, "copy.layers", newLayers(t, img, 1))
	testutil.GoldenString(t, "copy.config", testutil.ConfigSummary(t, img))
}

func TestCopyChownByNameReadsOnlyWhatItNeeds(t *testing.T) {
	e := newEnv(t)
	base := testutil.BusyboxImage(t)
	// The first build indexes the base's layers (where does /a.jar go?).
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nCOPY lib/a.jar /a.jar\n", copyContext)
	n0 := e.baseLayerBytes(t, base)
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nCOPY --chown=1000:50 lib/a.jar /a.jar\n", copyContext)
	if n := e.baseLayerBytes(t, base) - n0; n != 0 {
		t.Errorf("numeric --chown fetched %d base layer bytes, want 0", n)
	}
	// /etc/passwd from a layer of this build: the base is not read.
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nCOPY <<EOF /etc/passwd\nsvc:x:77:88::/:/bin/sh\nEOF\nCOPY --chown=svc lib/a.jar /a.jar\n", copyContext)
	if n := e.baseLayerBytes(t, base) - n0; n != 0 {
		t.Errorf("--chown=svc with /etc/passwd in a new layer fetched %d base layer bytes, want 0", n)
	}
	// Now the base's passwd: its layer is read.
	img := e.mustBuild(t, "FROM {{REG}}/library/busybox\nCOPY --chown=app lib/a.jar /a.jar\n", copyContext)
	layers, _ := img.Layers()
	if line := testutil.TreeEntry(testutil.LayerTree(t, layers[1]), "/a.jar"); !strings.Contains(line, " 1000:1000 ") {
		t.Errorf("a.jar: %q, want owner 1000:1000", line)
	}
	// The owner above came from the base's /etc/passwd, read from the
	// layer the index pass kept in the store: never fetched twice.
	if n := e.baseLayerBytes(t, base) - n0; n != 0 {
		t.Errorf("--chown=app by name fetched %d base layer bytes again; the layer read for its index is in the store", n)
	}
}

func TestCopyOnlyBuildFetchesBaseLayersOnceForTheirIndex(t *testing.T) {
	e := newEnv(t)
	base := testutil.BusyboxImage(t)
	var log strings.Builder
	img := e.mustBuild(t, "FROM {{REG}}/library/busybox\nWORKDIR /app\nCOPY app/ ./\nCOPY --chown=1000 lib/ /lib2/\nENV A=b\n", copyContext,
		func(o *build.Options) { o.Log = &log })
	var size int64
	layers, _ := base.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		size += n
	}
	// WORKDIR /app must know whether /app is in the base: each base layer
	// is fetched once, for its index, and the log says so.
	if n := e.baseLayerBytes(t, base); n == 0 || n > size {
		t.Errorf("first COPY-only build fetched %d base layer bytes, want each layer once (%d)", n, size)
	}
	if !strings.Contains(log.String(), "for its path index: WORKDIR /app needs to know what /app is") {
		t.Errorf("the log does not say why a base layer was fetched:\n%s", log.String())
	}
	if got, _ := img.Layers(); len(got) != 4 {
		t.Errorf("%d layers, want base + WORKDIR + 2 COPY", len(got))
	}
	// The index is kept: the next build reads no base layer.
	n0 := e.baseLayerBytes(t, base)
	e.mustBuild(t, "FROM {{REG}}/library/busybox\nWORKDIR /other\nCOPY app/ /usr/local/bin\nCOPY lib/a.jar /bin/\n", copyContext)
	if n := e.baseLayerBytes(t, base) - n0; n != 0 {
		t.Errorf("second COPY-only build fetched %d base layer bytes, want 0 (the index is in the store)", n)
	}
}

func TestWorkdirOwnedByUser(t *testing.T) {
	e := newEnv(t)
	img := e.mustBuild(t, "FROM {{REG}}/library/busybox\nUSER app\nWORKDIR /home/app/work\nWORKDIR sub\nUSER 0\nWORKDIR /home/app/work\n", nil)
	testutil.Golden(t, "workdir.layers", newLayers(t, img, 1))
	cfg, _ := img.ConfigFile()
	if cfg.Config.WorkingDir != "/home/app/work" {
		t.Errorf("WorkingDir = %q", cfg.Config.WorkingDir)
	}
}

func TestMultiStage(t *testing.T) {
	e := newEnv(t)
	img := e.mustBuild(t, `FROM {{REG}}/library/busybox AS base
COPY app/ /src/
COPY lib/a.jar /src/a.jar

FROM scratch AS unused
COPY nothing-here /x

FROM scratch
COPY --from=base /src/main.sh /bin/app
COPY --from=0 /src/conf/ /etc/app/
COPY --from=base /src/link /link
COPY --from={{REG}}/library/busybox /etc/passwd /etc/passwd
COPY --from=base --chown=7:8 /src/a.jar /a.jar
USER 1000
ENTRYPOINT ["/bin/app"]
`, copyContext)
	testutil.Golden(t, "multistage.tree", testutil.ImageTree(t, img))
	testutil.GoldenString(t, "multistage.config", strings.ReplaceAll(testutil.ConfigSummary(t, img), e.reg, "REG"))
}

func TestTarget(t *testing.T) {
	e := newEnv(t)
	res, err := e.build(t, "FROM scratch AS one\nCOPY lib/a.jar /a\nFROM scratch AS two\nCOPY nothing /x\n", copyContext,
		func(o *build.Options) { o.Target = "one" })
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ImageTree(t, resImage(t, res)); len(got) != 1 || !strings.HasPrefix(got[0], "/a file 0644 0:0 4 ") {
		t.Errorf("tree = %v", got)
	}
}

func TestOnbuildTriggersRun(t *testing.T) {
	e := newEnv(t)
	parent := e.mustBuild(t, "FROM scratch\nONBUILD COPY lib/a.jar /from-trigger.jar\nONBUILD ENV TRIGGERED=1\n", copyContext)
	d, err := e.store.WriteImage(t.Context(), parent)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Tag("index.docker.io/library/onbuild-parent:latest", d); err != nil {
		t.Fatal(err)
	}
	img := e.mustBuild(t, "FROM onbuild-parent\nCOPY lib/b.jar /b.jar\n", copyContext)
	tree := testutil.ImageTree(t, img)
	if testutil.TreeEntry(tree, "/from-trigger.jar") == "" || testutil.TreeEntry(tree, "/b.jar") == "" {
		t.Errorf("tree = %v", tree)
	}
	cfg, _ := img.ConfigFile()
	if len(cfg.Config.OnBuild) != 0 {
		t.Errorf("OnBuild = %v, want the triggers consumed", cfg.Config.OnBuild)
	}
	if !strings.Contains(strings.Join(cfg.Config.Env, " "), "TRIGGERED=1") {
		t.Errorf("Env = %v", cfg.Config.Env)
	}
}

func TestAddArchiveAndURL(t *testing.T) {
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	mt := time.Unix(1600000000, 0)
	tw.WriteHeader(&tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 5, Gid: 6, ModTime: mt})
	tw.WriteHeader(&tar.Header{Name: "pkg/bin", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3, Uid: 5, Gid: 6, ModTime: mt})
	tw.Write([]byte("bin"))
	tw.WriteHeader(&tar.Header{Name: "pkg/hard", Typeflag: tar.TypeLink, Linkname: "pkg/bin", ModTime: mt})
	tw.WriteHeader(&tar.Header{Name: "pkg/sym", Typeflag: tar.TypeSymlink, Linkname: "bin", ModTime: mt})
	tw.Close()
	zw.Close()

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/tool.sh" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
		w.Write([]byte("#!/bin/sh\n"))
	}))
	defer srv.Close()

	e := newEnv(t)
	files := map[string]file{"pkg.tar.gz": {content: tgz.String()}, "plain.txt": {content: "not an archive"}}
	img := e.mustBuild(t, `FROM scratch
ADD pkg.tar.gz /opt/
ADD plain.txt /plain.txt
ADD `+srv.URL+`/files/tool.sh /usr/local/bin/
ADD --chown=1:1 `+srv.URL+`/files/tool.sh /renamed.sh
`, files)
	tree := testutil.ImageTree(t, img)
	for path, want := range map[string]string{
		"/opt/pkg/bin":           "file 0755 5:6 3 ",
		"/opt/pkg":               "dir 0750 5:6 ",
		"/opt/pkg/hard":          "hardlink ",
		"/opt/pkg/sym":           "symlink 0777 0:0 - - bin",
		"/plain.txt":             "file 0644 0:0 14 ",
		"/usr/local/bin/tool.sh": "file 0600 0:0 10 ",
		"/renamed.sh":            "file 0600 1:1 10 ",
	} {
		if got := testutil.TreeEntry(tree, path); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	_, err := e.build(t, "FROM scratch\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 "+srv.URL+"/files/tool.sh /x\n", nil)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Errorf("bad checksum: %v", err)
	}
	_, err = e.build(t, "FROM scratch\nADD --checksum=sha256:8d41e2ac6fcb2ad4cdc8b2d8ce2bd1e1e9b8aac1b2e4a8da2d8c46bc4d52e39c "+srv.URL+"/files/tool.sh /x\n", nil)
	if err == nil {
		t.Errorf("a wrong checksum was accepted")
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, df, want string
	}{
		{"missing source", "FROM scratch\nCOPY nope.txt /\n", "Dockerfile:2: COPY nope.txt: not found in the build context"},
		{"outside context", "FROM scratch\nCOPY ../x /\n", "Dockerfile:2: COPY ../x: not found in the build context"},
		{"file over a directory", "FROM scratch\nCOPY app/conf /x/main.sh/\nCOPY app/ /x/\n", "Dockerfile:3: COPY app/: cannot replace to directory /x/main.sh with file"},
		{"directory over a file", "FROM scratch\nCOPY lib/a.jar /x\nCOPY app/ /x\n", "Dockerfile:3: COPY app/: cannot copy to non-directory: /x"},
		{"below a file", "FROM scratch\nCOPY lib/a.jar /x\nCOPY lib/b.jar /x/y/\n", "Dockerfile:3: COPY lib/b.jar: mkdir /x: not a directory"},
		{"unknown user without passwd", "FROM scratch\nCOPY --chown=ghost lib/a.jar /x\n", `Dockerfile:2: COPY --chown=ghost: unknown user "ghost": the image has no /etc/passwd`},
		{"run without a shell", "FROM scratch\nCOPY lib/a.jar /x\nRUN true\n", "/bin/sh"},
		{"unknown base", "FROM {{REG}}/library/nope:1\n", "Dockerfile:1: FROM {{REG}}/library/nope:1: "},
		{"unknown from", "FROM scratch\nCOPY --from=builder /x /x\n", "Dockerfile:2: COPY --from=builder: "},
		{"bad chmod", "FROM scratch\nCOPY --chmod=99z lib/a.jar /x\n", "Dockerfile:2: COPY --chmod=99z: invalid mode"},
		{"ignored", "FROM scratch\nCOPY app/debug.log /x\n", "not found in the build context (or excluded by .dockerignore)"},
		{"syntax", "FROM scratch\nCOPY\n", "Dockerfile:2: COPY requires at least two arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.build(t, c.df, copyContext)
			want := strings.ReplaceAll(c.want, "{{REG}}", e.reg)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want it to contain %q", err, want)
			}
		})
	}
}

func TestUnreachableRegistry(t *testing.T) {
	e := newEnv(t)
	_, err := e.build(t, "FROM 127.0.0.1:1/library/busybox\n", nil, func(o *build.Options) { o.Registry = registry.New(registry.Options{Retries: -1}) })
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:1: FROM 127.0.0.1:1/library/busybox") {
		t.Fatalf("error %v", err)
	}
}

func TestSymlinkSourceStaysInContext(t *testing.T) {
	e := newEnv(t)
	_, err := e.build(t, "FROM scratch\nCOPY app/outside /x\n", copyContext)
	// app/outside -> ../../../etc/passwd resolves inside the context to
	// the context's own etc/passwd, which does not exist.
	if err == nil || !strings.Contains(err.Error(), "not found in the build context") {
		t.Fatalf("error %v: the host's /etc/passwd must never be read", err)
	}
}

func TestReproducible(t *testing.T) {
	e := newEnv(t)
	df := "FROM {{REG}}/library/busybox\nCOPY app/ /app/\nCOPY <<EOF /x\nhi\nEOF\n"
	a, err := e.build(t, df, copyContext)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.build(t, df, copyContext)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Errorf("same inputs and timestamp gave %s and %s", a.Digest, b.Digest)
	}
	c, err := e.build(t, df, copyContext, func(o *build.Options) { o.Compression = archive.Zstd })
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest == a.Digest {
		t.Errorf("zstd gave the gzip digest")
	}
	m, _ := resImage(t, c).Manifest()
	if m.Layers[1].MediaType != types.OCILayerZStd {
		t.Errorf("zstd layer media type %s", m.Layers[1].MediaType)
	}
}

func TestDockerFormat(t *testing.T) {
	e := newEnv(t)
	img := e.mustBuild(t, "FROM {{REG}}/library/busybox\nCOPY lib/a.jar /a\n", copyContext, func(o *build.Options) { o.Format = build.FormatDocker })
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 || m.Config.MediaType != types.DockerConfigJSON {
		t.Errorf("manifest %s, config %s", m.MediaType, m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if l.MediaType != types.DockerLayer {
			t.Errorf("layer %s", l.MediaType)
		}
	}
}

func TestMultiPlatform(t *testing.T) {
	e := newEnv(t)
	res, err := e.build(t, "FROM {{REG}}/library/multi\nARG TARGETARCH\nCOPY lib/a.jar /$TARGETARCH.jar\n", copyContext, func(o *build.Options) {
		o.Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := resIndex(t, res)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests", len(im.Manifests))
	}
	for i, arch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.Architecture != arch {
			t.Errorf("manifest %d platform %v", i, d.Platform)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		tree := testutil.ImageTree(t, img)
		if testutil.TreeEntry(tree, "/"+arch+".jar") == "" || testutil.TreeEntry(tree, "/opt/"+arch) == "" {
			t.Errorf("%s tree: %v", arch, tree)
		}
		cfg, _ := img.ConfigFile()
		if cfg.Architecture != arch {
			t.Errorf("config architecture %s, want %s", cfg.Architecture, arch)
		}
	}
}
