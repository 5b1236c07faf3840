package build_test

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// TestConfigLikeBuildKit checks config details where kiln used to differ
// from BuildKit (docker 20.10's, checked against it): EXPOSE expands
// variables, ARG names expand, FROM scratch gets PATH and WorkingDir /,
// root and numeric ids need no /etc/passwd, proxy build args stay out of
// the config and history and out of the unused-arg warning, whose wording
// is docker's.
func TestConfigLikeBuildKit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var log bytes.Buffer
	img := e.mustBuild(t, `FROM scratch
ENV p=tcp
ARG PORTS="90 91/udp"
EXPOSE 82/$p $PORTS 8080:80 7000-7001/UDP
ARG name=foo
ARG ${name}=default
ENV X=${foo}
USER root
WORKDIR /as-root
USER root:root
WORKDIR /as-root-root
USER 1000
WORKDIR /as-1000
USER 7:root
WORKDIR /as-7
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN true
`, nil, func(o *build.Options) {
		o.BuildArgs = map[string]string{"foo": "from-cli", "HTTP_PROXY": "http://proxy.invalid:3128",
			"no_proxy": "localhost", "UNUSED_B": "1", "UNUSED_A": "2"}
		o.Log = &log
	})
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if want := []string{defaultPath, "p=tcp", "X=from-cli"}; !slices.Equal(c.Env, want) {
		t.Errorf("Env = %q, want %q", c.Env, want)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if want := []string{"7000/udp", "7001/udp", "80/tcp", "82/tcp", "90/tcp", "91/udp"}; !slices.Equal(ports, want) {
		t.Errorf("ExposedPorts = %q, want %q", ports, want)
	}
	tree := testutil.ImageTree(t, img)
	for p, owner := range map[string]string{"/as-root": "0:0", "/as-root-root": "0:0", "/as-1000": "1000:1000", "/as-7": "7:0"} {
		if l := testutil.TreeEntry(tree, p); !strings.HasPrefix(l, p+" dir 0755 "+owner+" ") {
			t.Errorf("%s: %q, want a directory owned by %s", p, l, owner)
		}
	}
	var history []string
	for _, h := range cfg.History {
		history = append(history, h.CreatedBy)
		if strings.Contains(strings.ToLower(h.CreatedBy), "proxy") {
			t.Errorf("a proxy build arg reached the history: %q", h.CreatedBy)
		}
	}
	for _, want := range []string{
		"ARG name=foo", "ARG foo=default", // the name expanded, the default (not the build arg) shown
		"EXPOSE map[7000/udp:{} 7001/udp:{} 80/tcp:{} 82/tcp:{} 90/tcp:{} 91/udp:{}]",
		`HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" '\x00'}`,
	} {
		if !slices.Contains(history, want) {
			t.Errorf("history lacks %q: %q", want, history)
		}
	}
	if slices.ContainsFunc(history, func(h string) bool { return strings.HasPrefix(h, "ONBUILD") }) {
		t.Errorf("ONBUILD has a history entry (BuildKit writes none): %q", history)
	}
	if c.WorkingDir != "/as-7" || len(c.OnBuild) != 1 {
		t.Errorf("WorkingDir %q, OnBuild %q", c.WorkingDir, c.OnBuild)
	}
	if !strings.Contains(log.String(), "[Warning] One or more build-args [UNUSED_A UNUSED_B] were not consumed\n") {
		t.Errorf("no docker-style warning about the unused build args in the log:\n%s", log.String())
	}

	img = e.mustBuild(t, "FROM scratch\n", nil)
	cfg, _ = img.ConfigFile()
	if !slices.Equal(cfg.Config.Env, []string{defaultPath}) || cfg.Config.WorkingDir != "/" {
		t.Errorf("FROM scratch: Env %q WorkingDir %q, want BuildKit's PATH and /", cfg.Config.Env, cfg.Config.WorkingDir)
	}
}

// TestBaseWithoutPathGetsDefaultPath: BuildKit gives any stage whose base
// has no PATH the default one, after the base's variables.
func TestBaseWithoutPathGetsDefaultPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := testutil.BusyboxImage(t)
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Env = []string{"LANG=C.UTF-8"}
	nopath, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushImage(t, e.reg+"/library/nopath:1", nopath)
	img := e.mustBuild(t, "FROM {{REG}}/library/nopath:1\nENV A=1\n", nil)
	cfg, _ := img.ConfigFile()
	if want := []string{"LANG=C.UTF-8", defaultPath, "A=1"}; !slices.Equal(cfg.Config.Env, want) {
		t.Errorf("Env = %q, want %q", cfg.Config.Env, want)
	}
}

// TestUnknownOwnerNamesTheUser: a user name that the image does not list
// is an error naming it (docker 20.10's BuildKit fails too), while root
// and numbers never need the file.
func TestUnknownOwnerNamesTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.build(t, "FROM scratch\nUSER nobody\nWORKDIR /w\n", nil)
	if err == nil || !strings.Contains(err.Error(), `Dockerfile:3: WORKDIR /w: unknown user "nobody": the image has no /etc/passwd`) {
		t.Errorf("err = %v, want the unknown user named at line 3", err)
	}
	for _, bad := range []string{"EXPOSE 80/xtp", "EXPOSE 70000", "EXPOSE 90-80"} {
		_, err := e.build(t, "FROM scratch\n"+bad+"\n", nil)
		if err == nil || !strings.Contains(err.Error(), "Dockerfile:2: EXPOSE: invalid port") {
			t.Errorf("%s: err = %v, want an invalid port at line 2", bad, err)
		}
	}
}

// TestRunUserRootAndProxyArgs: in an image without /etc/passwd and
// /etc/group, RUN works under USER root:root, 0 and root (BuildKit maps
// root and ids without a lookup); proxy build args reach RUN in both
// cases without an ARG line and stay out of the config, the history and
// the step cache key.
func TestRunUserRootAndProxyArgs(t *testing.T) {
	e, sb := runEnv(t)
	dockerfile := `FROM {{REG}}/library/busybox AS bb
FROM scratch
COPY --from=bb /bin /bin
USER root:root
RUN id -u > /u1
USER root
RUN id -u > /u2
USER 0
RUN env > /env
`
	var log bytes.Buffer
	img := e.mustBuild(t, dockerfile, nil, withSandbox(sb, &log), func(o *build.Options) {
		o.BuildArgs = map[string]string{"HTTP_PROXY": "http://proxy.invalid:3128", "no_proxy": "localhost"}
	})
	tree := testutil.ImageTree(t, img)
	for _, p := range []string{"/u1", "/u2"} {
		if l := testutil.TreeEntry(tree, p); !strings.Contains(l, " "+sha256Hex("0\n")+" ") {
			t.Errorf("%s: %q, want uid 0", p, l)
		}
	}
	env := imageFile(t, img, "/env")
	for _, want := range []string{"HTTP_PROXY=http://proxy.invalid:3128\n", "http_proxy=http://proxy.invalid:3128\n",
		"NO_PROXY=localhost\n", "no_proxy=localhost\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("RUN's environment lacks %q:\n%s", want, env)
		}
	}
	cfg, _ := img.ConfigFile()
	for _, h := range cfg.History {
		if strings.Contains(strings.ToLower(h.CreatedBy), "proxy") {
			t.Errorf("a proxy build arg reached the history: %q", h.CreatedBy)
		}
	}
	for _, kv := range cfg.Config.Env {
		if strings.Contains(strings.ToLower(kv), "proxy") {
			t.Errorf("a proxy build arg reached the config: %q", kv)
		}
	}
	if strings.Contains(log.String(), "were not consumed") {
		t.Errorf("proxy build args reported as unused:\n%s", log.String())
	}
}

// imageFile is the content of a regular file of img's flattened tree.
func imageFile(t *testing.T, img v1.Image, p string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the image: %v", p, err)
		}
		if path.Clean("/"+h.Name) == p {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

// TestStopSignalLikeDocker: STOPSIGNAL takes what docker's parser does
// (any non-zero number, a known name in any case, with or without SIG,
// RTMIN+n) and names what it refuses.
func TestStopSignalLikeDocker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, ok := range []string{"SIGTERM", "kill", "rtmin+3", "100", "9"} {
		img := e.mustBuild(t, "FROM scratch\nSTOPSIGNAL "+ok+"\n", nil)
		if cfg, _ := img.ConfigFile(); cfg.Config.StopSignal != ok {
			t.Errorf("STOPSIGNAL %s: config says %q", ok, cfg.Config.StopSignal)
		}
	}
	for _, bad := range []string{"FOO", "0", "SIGRTMIN+16"} {
		if _, err := e.build(t, "FROM scratch\nSTOPSIGNAL "+bad+"\n", nil); err == nil ||
			!strings.Contains(err.Error(), "Dockerfile:2: STOPSIGNAL: invalid signal: "+bad) {
			t.Errorf("STOPSIGNAL %s: err = %v", bad, err)
		}
	}
}

// TestArgWithoutValueStaysUnset: an ARG that has no value (none before
// FROM, none as a default or build arg) is unset in the stage, not empty,
// as in BuildKit; one with a global default takes it.
func TestArgWithoutValueStaysUnset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.mustBuild(t, "ARG X\nARG Y=y\nFROM scratch\nARG X\nARG Y\nARG Z\nENV O=\"${X-unset} ${Y-unset} ${Z-unset}\"\n", nil)
	cfg, _ := img.ConfigFile()
	if !slices.Contains(cfg.Config.Env, "O=unset y unset") {
		t.Errorf("Env = %q, want O=unset y unset", cfg.Config.Env)
	}
}

// TestUnknownNameInPasswdIsRoot: a --chown name the image's /etc/passwd
// does not list gets uid 0 and gid 0, and an unknown group keeps the
// user's gid, as BuildKit's file operations do; the log warns.
func TestUnknownNameInPasswdIsRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var log strings.Builder
	res, err := e.build(t, "FROM {{REG}}/library/busybox\nCOPY --chown=ghost lib/a.jar /x\nCOPY --chown=1234:ghosts lib/a.jar /y\n", copyContext,
		func(o *build.Options) { o.Log = &log })
	if err != nil {
		t.Fatal(err)
	}
	tree := strings.Join(testutil.ImageTree(t, resImage(t, res)), "\n")
	for _, want := range []string{"/x file 0644 0:0 ", "/y file 0644 1234:1234 "} {
		if !strings.Contains(tree, want) {
			t.Errorf("tree lacks %q:\n%s", want, tree)
		}
	}
	for _, want := range []string{`user "ghost" is not in the image's /etc/passwd`, `group "ghosts" is not in the image's /etc/group`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}
