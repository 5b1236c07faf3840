package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

func TestMain(m *testing.M) { Main(m) }

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBusyboxImage(t *testing.T) {
	img := BusyboxImage(t)
	tree := ImageTree(t, img)
	bin, err := os.ReadFile(harness.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	for path, want := range map[string]string{
		"/bin/busybox": "/bin/busybox file 0755 0:0 " + strconv.Itoa(len(bin)) + " " + hex.EncodeToString(sum[:]) + " -",
		"/bin/sh":      "/bin/sh symlink 0777 0:0 - - /bin/busybox",
		"/etc/passwd":  "/etc/passwd file 0644 0:0 " + strconv.Itoa(len(harness.BusyboxPasswd)) + " " + sha(harness.BusyboxPasswd) + " -",
		"/etc/group":   "/etc/group file 0644 0:0 " + strconv.Itoa(len(harness.BusyboxGroup)) + " " + sha(harness.BusyboxGroup) + " -",
		"/tmp":         "/tmp dir 1777 0:0 - - -",
		"/root":        "/root dir 0700 0:0 - - -",
		"/home/app":    "/home/app dir 0755 1000:1000 - - -",
	} {
		if got := TreeEntry(tree, path); got != want {
			t.Errorf("entry %s:\n got %q\nwant %q", path, got, want)
		}
	}
	for _, l := range []string{"app:x:1000:1000:", "daemon:x:1:1:", "nobody:x:65534:"} {
		if !strings.Contains(harness.BusyboxPasswd, l) {
			t.Errorf("passwd lacks %q", l)
		}
	}
	for _, l := range []string{"app:x:1000:\n", "staff:x:50:\n"} {
		if !strings.Contains(harness.BusyboxGroup, l) {
			t.Errorf("group lacks %q", l)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cf.Config.Cmd, " ") != "sh" || len(cf.Config.Env) != 1 || !strings.HasPrefix(cf.Config.Env[0], "PATH=") {
		t.Errorf("config: Cmd %q Env %q", cf.Config.Cmd, cf.Config.Env)
	}
	// Deterministic: made again, the same digest.
	again, err := harness.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustDigest(t, img), mustDigest(t, again); a != b {
		t.Errorf("busybox image is not deterministic: %s vs %s", a, b)
	}
}

func TestStartRegistryPushPullAndCount(t *testing.T) {
	addr := StartRegistry(t)
	img := BusyboxImage(t)
	PushImage(t, addr+"/library/busybox:latest", img)

	proxy, counts := CountingProxy(t, addr)
	ref, err := name.ParseReference(proxy + "/library/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustDigest(t, img), mustDigest(t, pulled); a != b {
		t.Fatalf("pulled digest %s, pushed %s", b, a)
	}
	cfgDigest, err := pulled.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pulled.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[0].Digest()
	if n := counts.BlobBytes(ld.String()); n != 0 {
		t.Errorf("layer bytes before reading the layer: %d", n)
	}
	if got := ImageTree(t, pulled); TreeEntry(got, "/bin/sh") == "" {
		t.Errorf("pulled image has no /bin/sh")
	}
	size, _ := layers[0].Size()
	if n := counts.BlobBytes(ld.String()); n != size {
		t.Errorf("layer %s: counted %d bytes, layer size %d", ld, n, size)
	}
	if counts.BlobBytes(cfgDigest.String()) == 0 || counts.BlobGets(cfgDigest.String()) != 1 {
		t.Errorf("config blob: %d bytes in %d GETs", counts.BlobBytes(cfgDigest.String()), counts.BlobGets(cfgDigest.String()))
	}
	if got := counts.Digests(); len(got) != 2 {
		t.Errorf("blobs fetched: %v, want config and one layer", got)
	}

	// Pushing through the proxy works too (upload locations point back at it).
	PushImage(t, proxy+"/library/again:1", img)
	if _, err := remote.Head(mustRef(t, addr+"/library/again:1")); err != nil {
		t.Errorf("image pushed through the proxy is not in the registry: %v", err)
	}

	// skopeo, the tool the e2e tests check kiln's output with, reads it.
	if _, err := os.Stat("/usr/bin/skopeo"); err == nil {
		out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+addr+"/library/busybox:latest").CombinedOutput()
		if err != nil || !strings.Contains(string(out), mustDigest(t, img).String()) {
			t.Errorf("skopeo inspect: %v\n%s", err, out)
		}
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInProcessRegistryPlatformIndex(t *testing.T) {
	addr := StartInProcessRegistry(t)
	idx := PlatformIndex(t)
	PushIndex(t, addr+"/multi/arch:1", idx)
	got, err := remote.Index(mustRef(t, addr+"/multi/arch:1"))
	if err != nil {
		t.Fatal(err)
	}
	// As stored: digests, sizes, and platforms of descriptors and configs agree.
	if err := validate.Index(got); err != nil {
		t.Fatalf("PlatformIndex is not a valid index: %v", err)
	}
	im, err := got.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2", len(im.Manifests))
	}
	for i, want := range []string{"linux/amd64", "linux/arm64/v8"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.String() != want {
			t.Errorf("manifest %d platform %v, want %s", i, d.Platform, want)
			continue
		}
		img, err := got.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if e := TreeEntry(ImageTree(t, img), "/etc/platform"); !strings.Contains(e, sha(want+"\n")) {
			t.Errorf("%s: /etc/platform is %q", want, e)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Platform().String() != want {
			t.Errorf("%s: config platform %s", want, cf.Platform())
		}
	}
}

func TestDebianImage(t *testing.T) {
	SkipIfShort(t)
	img := DebianImage(t)
	tree := ImageTree(t, img)
	for _, p := range []string{"/usr/bin/apt-get", "/usr/bin/bash", "/etc/debian_version"} {
		if TreeEntry(tree, p) == "" {
			t.Errorf("debian image lacks %s", p)
		}
	}
	if e := TreeEntry(tree, "/bin"); e != "/bin symlink 0777 0:0 - - usr/bin" {
		t.Errorf("/bin is %q, want the merged-/usr symlink", e)
	}
	for _, p := range []string{"/etc/resolv.conf", "/etc/hostname"} {
		if e := TreeEntry(tree, p); e != "" {
			t.Errorf("debian image should not have %s: %s", p, e)
		}
	}
	src, err := os.ReadFile(harness.DebianSources[0])
	if err == nil {
		if e := TreeEntry(tree, "/etc/apt/sources.list.d/debian.sources"); !strings.Contains(e, sha(string(src))) {
			t.Errorf("debian image's sources differ from the host's: %q", e)
		}
	}
	// The cached layer gives the same image again.
	again, err := harness.Debian(harness.CacheDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustDigest(t, img), mustDigest(t, again); a != b {
		t.Errorf("debian image changed between loads: %s vs %s", a, b)
	}
}

func TestMissingProgramMessage(t *testing.T) {
	err := harness.NeedExecutable("/nonexistent/docker-registry", "docker-registry")
	if err == nil || !harness.IsMissing(err) {
		t.Fatalf("NeedExecutable: %v", err)
	}
	for _, want := range []string{"/nonexistent/docker-registry", "install the Debian package docker-registry", "sudo .ci/deps"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}
