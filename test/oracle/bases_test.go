package oracle

import (
	"archive/tar"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// pushBases pushes the cases' base images to the registry at reg and
// returns the placeholders that name them in the cases' Dockerfiles:
//
//	{{BUSYBOX}}     testutil.BusyboxImage: /bin/busybox and applet
//	                symlinks, users root, daemon, app (1000), nobody;
//	                groups staff (50), app (1000), nogroup
//	{{DEBIAN}}      testutil.DebianImage: mmdebstrap minbase bookworm
//	{{USRMERGE}}    busybox in /usr/bin with /bin -> usr/bin, /sbin ->
//	                usr/sbin, /lib -> usr/lib, and what COPY destinations
//	                meet in real bases (see usrMergeFiles), in two layers
//	{{NOPASSWD}}    busybox without /etc/passwd, /etc/group, and a config
//	                without Env (no PATH)
//	{{CONFIGURED}}  busybox with a config that sets every field a
//	                Dockerfile can (entrypoint, user app, workdir, ports,
//	                volume, labels, stop signal, healthcheck, env)
//	{{ONBUILD}}     busybox with ONBUILD triggers (ENV, COPY onbuild.txt,
//	                RUN)
//	{{INDEX}}       testutil.PlatformIndex: linux/amd64 and linux/arm64/v8
//	                images with /etc/platform (nothing in them runs)
func pushBases(t *testing.T, reg string) map[string]string {
	t.Helper()
	bb := testutil.BusyboxImage(t)
	bbFiles, err := harness.BusyboxFiles()
	testutil.Require(t, err)
	vars := map[string]string{}
	push := func(key string, img v1.Image) {
		ref := reg + "/oracle/" + strings.ToLower(key) + ":1"
		testutil.PushImage(t, ref, img)
		vars[key] = ref
	}
	push("BUSYBOX", bb)
	push("DEBIAN", testutil.DebianImage(t))
	push("USRMERGE", usrMergeImage(t, bbFiles))

	var noPasswd []harness.File
	for _, f := range bbFiles {
		if f.Path != "etc/passwd" && f.Path != "etc/group" {
			noPasswd = append(noPasswd, f)
		}
	}
	push("NOPASSWD", newImage(t, v1.Config{}, noPasswd))

	cfg := v1.Config{
		Env:          []string{"PATH=" + harness.DefaultPath, "BASEVAR=base", "SHARED=from-base"},
		Entrypoint:   []string{"/bin/sh", "-c"},
		Cmd:          []string{"echo base"},
		WorkingDir:   "/home/app",
		User:         "app",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Volumes:      map[string]struct{}{"/data": {}},
		Labels:       map[string]string{"base": "1", "override": "base"},
		StopSignal:   "SIGQUIT",
		Healthcheck: &v1.HealthConfig{Test: []string{"CMD-SHELL", "true"},
			Interval: 30 * time.Second, Retries: 2},
	}
	push("CONFIGURED", withConfig(t, bb, cfg))

	ob := v1.Config{Env: []string{"PATH=" + harness.DefaultPath}, Cmd: []string{"sh"},
		OnBuild: []string{"ENV TRIGGERED=yes", "COPY onbuild.txt /onbuild.txt", "RUN echo ran > /onbuild-ran"}}
	push("ONBUILD", withConfig(t, bb, ob))

	idxRef := reg + "/oracle/index:1"
	testutil.PushIndex(t, idxRef, testutil.PlatformIndex(t))
	vars["INDEX"] = idxRef
	return vars
}

// usrMergeFiles: busybox under /usr/bin with the usr-merge symlinks, and
// a directory, a file, symlinks to directories (absolute and relative), a
// dangling symlink and a directory owned by app at the places COPY
// destinations and their parents meet them.
func usrMergeFiles(bb []harness.File) []harness.File {
	var files []harness.File
	for _, f := range bb {
		switch {
		case f.Path == "bin" || f.Path == "sbin":
			continue
		case strings.HasPrefix(f.Path, "bin/") || strings.HasPrefix(f.Path, "sbin/"):
			f.Path = "usr/" + f.Path
			if f.Type == tar.TypeSymlink {
				f.Link = "/usr/bin/busybox"
			}
		}
		files = append(files, f)
	}
	own := func(f harness.File, uid, gid int) harness.File { f.UID, f.GID = uid, gid; return f }
	return append(files,
		harness.Symlink("bin", "usr/bin"), harness.Symlink("sbin", "usr/sbin"),
		harness.Dir("usr/lib", 0o755), harness.Symlink("lib", "usr/lib"),
		harness.Dir("usr/local/bin", 0o755), harness.Reg("usr/local/bin/existing", 0o755, "#!/bin/sh\n"),
		harness.Dir("opt", 0o755), harness.Dir("opt/app", 0o755), harness.Reg("opt/app/keep", 0o644, "keep\n"),
		harness.Symlink("app", "/opt/app"),
		harness.Reg("srv/file", 0o640, "base file\n"),
		harness.Symlink("srv/dirlink", "/opt"), harness.Symlink("srv/rellink", "../opt"),
		harness.Symlink("srv/dangling", "/nowhere"), harness.Symlink("srv/filelink", "/srv/file"),
		own(harness.Dir("data", 0o750), 1000, 1000), own(harness.Reg("data/own", 0o600, "mine\n"), 1000, 1000),
		harness.Dir("run", 0o755), harness.Symlink("var/run", "/run"),
		harness.Dir("etc/conf.d", 0o700), harness.Reg("etc/conf.d/a.conf", 0o600, "a=1\n"),
	)
}

func usrMergeImage(t *testing.T, bb []harness.File) v1.Image {
	t.Helper()
	img := newImage(t, v1.Config{Env: []string{"PATH=" + harness.DefaultPath}, Cmd: []string{"sh"}}, usrMergeFiles(bb))
	// A second layer: a new file, and a whiteout of a first-layer file.
	b, err := harness.LayerTar([]harness.File{harness.Reg("etc/layer2", 0o644, "2\n"), harness.Reg("opt/app/.wh.keep", 0o644, "")})
	testutil.Require(t, err)
	l, err := harness.LayerFromTar(b)
	testutil.Require(t, err)
	img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "layer 2", Created: v1.Time{Time: harness.Epoch}}})
	testutil.Require(t, err)
	return img
}

func newImage(t *testing.T, cfg v1.Config, files []harness.File) v1.Image {
	t.Helper()
	b, err := harness.LayerTar(files)
	testutil.Require(t, err)
	l, err := harness.LayerFromTar(b)
	testutil.Require(t, err)
	img, err := harness.NewImage(v1.ConfigFile{Architecture: hostArch(t), Config: cfg}, []v1.Layer{l}, []string{"synthetic"})
	testutil.Require(t, err)
	return img
}

func hostArch(t *testing.T) string {
	cf, err := testutil.BusyboxImage(t).ConfigFile()
	testutil.Require(t, err)
	return cf.Architecture
}

func withConfig(t *testing.T, img v1.Image, c v1.Config) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	testutil.Require(t, err)
	cf = cf.DeepCopy()
	cf.Config = c
	out, err := mutate.ConfigFile(img, cf)
	testutil.Require(t, err)
	return out
}
