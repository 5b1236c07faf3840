package release

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
	"github.com/kiln-build/kiln/pkg/archive"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var (
	buildOnce sync.Once
	built     struct {
		reg, out, cache string
		err             error
	}
)

// buildImages runs release/build-images.sh once per test process and
// pushes REG/kiln:test(-debug).
func buildImages(t *testing.T) (reg string) {
	t.Helper()
	testutil.SkipIfShort(t)
	kiln := testutil.KilnBinary(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-release-")
		if err != nil {
			built.err = err
			return
		}
		testutil.AtExit(func() { os.RemoveAll(dir) })
		r, err := harness.StartRegistry(filepath.Join(dir, "registry"))
		if err != nil {
			built.err = err
			return
		}
		testutil.AtExit(func() { r.Close() })
		built.reg, built.cache = r.Addr, filepath.Join(dir, "cache")
		built.out, built.err = runScript(kiln, built.reg+"/kiln", built.cache, nil)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.reg
}

func runScript(kiln, repo, cache string, env []string) (string, error) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		return "", err
	}
	store, err := os.MkdirTemp("", "kiln-release-store-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(store)
	cmd := exec.Command("bash", "release/build-images.sh", repo, "test")
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "KILN="+kiln, "KILN_FLAGS=--root "+store, "RELEASE_CACHE="+cache,
		"SOURCE_DATE_EPOCH=1700000000"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &scriptError{err: err, stderr: stderr.String()}
	}
	return string(out), nil
}

type scriptError struct {
	err    error
	stderr string
}

func (e *scriptError) Error() string { return "build-images.sh: " + e.err.Error() + "\n" + e.stderr }

func remoteIndex(t *testing.T, ref string) v1.ImageIndex {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func platformImages(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Platform.OS+"/"+d.Platform.Architecture] = img
	}
	return out
}

func findFile(t *testing.T, img v1.Image, p string) (*tar.Header, []byte) {
	t.Helper()
	layers, err := archive.ImageLayers(img)
	if err != nil {
		t.Fatal(err)
	}
	h, b, found, err := archive.FindFile(layers, p, 256<<20)
	if err != nil || !found {
		t.Fatalf("%s: found=%v %v", p, found, err)
	}
	return h, b
}

func TestImagesContent(t *testing.T) {
	reg := buildImages(t)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(reg) + `/kiln:test@sha256:[0-9a-f]{64}\n` + regexp.QuoteMeta(reg) + `/kiln:test-debug@sha256:[0-9a-f]{64}\n$`).MatchString(built.out) {
		t.Errorf("script output %q", built.out)
	}
	machines := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	for _, tag := range []string{"test", "test-debug"} {
		imgs := platformImages(t, remoteIndex(t, reg+"/kiln:"+tag))
		if len(imgs) != 2 {
			t.Fatalf("%s: platforms %v, want linux/amd64 and linux/arm64", tag, imgs)
		}
		for plat, img := range imgs {
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != strings.TrimPrefix(plat, "linux/") || cf.Config.User != "1000:1000" {
				t.Errorf("%s %s: architecture %q user %q", tag, plat, cf.Architecture, cf.Config.User)
			}
			env := strings.Join(cf.Config.Env, " ")
			for _, want := range []string{"HOME=/home/kiln", "KILN_ROOT=/home/kiln/.local/share/kiln", "TMPDIR=/home/kiln"} {
				if !strings.Contains(env, want) {
					t.Errorf("%s %s: env %q lacks %s", tag, plat, env, want)
				}
			}
			_, bin := findFile(t, img, "usr/local/bin/kiln")
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("%s %s: kiln is not ELF: %v", tag, plat, err)
			}
			if f.Machine != machines[plat] {
				t.Errorf("%s %s: kiln is built for %v", tag, plat, f.Machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s %s: kiln is dynamically linked", tag, plat)
				}
			}
			for prog, bit := range map[string]uint{"usr/bin/newuidmap": 7, "usr/bin/newgidmap": 6} {
				h, _ := findFile(t, img, prog)
				if h.Mode&0o7777 != 0o755 {
					t.Errorf("%s %s: %s mode %o, want 0755 (file capabilities, not setuid)", tag, plat, prog, h.Mode)
				}
				c := []byte(h.PAXRecords["SCHILY.xattr.security.capability"])
				if len(c) != 20 || binary.LittleEndian.Uint32(c[4:]) != 1<<bit || binary.LittleEndian.Uint32(c[0:])&1 != 1 {
					t.Errorf("%s %s: %s security.capability %x", tag, plat, prog, c)
				}
			}
			if _, sub := findFile(t, img, "etc/subuid"); string(sub) != "kiln:100000:65536\n" {
				t.Errorf("%s %s: /etc/subuid %q", tag, plat, sub)
			}
			layers, _ := archive.ImageLayers(img)
			tree, err := archive.BuildTree(layers)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"home/kiln", "home/kiln/.local/share/kiln", "kaniko/.docker"} {
				if n, ok := tree.Lookup(d); !ok || !n.IsDir() || n.Header.Uid != 1000 {
					t.Errorf("%s %s: %s missing or not the kiln user's directory", tag, plat, d)
				}
			}
			_, sh := tree.Lookup("bin/sh")
			if sh != (tag == "test-debug") {
				t.Errorf("%s %s: /bin/sh present = %v", tag, plat, sh)
			}
		}
	}
}

// The same commit, built again, gives the same digests.
func TestImagesReproducible(t *testing.T) {
	reg := buildImages(t)
	out, err := runScript(testutil.KilnBinary(t), reg+"/kiln-again", built.cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	digests := func(s string) string { return regexp.MustCompile(`@sha256:[0-9a-f]{64}`).FindAllString(s, -1)[0] }
	if digests(out) != digests(built.out) {
		t.Errorf("second build %s, first %s", out, built.out)
	}
}

// ciUsers are the users the images run as in the tests, as CI runners
// run job images: the image's own kiln user, and root (kaniko's habit,
// and a pod without runAsNonRoot); both under docker's default seccomp
// profile.
var ciUsers = []struct{ name, user string }{{"uid 1000", "1000:1000"}, {"root", "0:0"}}

// The images run as a CI runner runs them, as uid 1000 and as root under
// the default seccomp profile: a COPY-only build and push, and kaniko's
// invocation (its /kaniko/.docker/config.json and --skip-tls-verify
// against a registry with TLS and a password); with seccomp unconfined,
// RUN steps get the subordinate ids through the capability-carrying
// newuidmap (a chown to another id works).
func TestImagesInDocker(t *testing.T) {
	reg := buildImages(t)
	d := testutil.SharedDocker(t)
	img, debug := reg+"/kiln:test", reg+"/kiln:test-debug"
	d.Docker(t, "pull", "-q", img)
	d.Docker(t, "pull", "-q", debug)
	if out := d.Run(t, img, "version"); !strings.Contains(out, "Version:    test") {
		t.Errorf("kiln version in the image: %q", out)
	}
	testutil.PushImage(t, reg+"/busybox:latest", testutil.BusyboxImage(t))
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "app.txt"), []byte("app\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+reg+"/busybox:latest\nCOPY app.txt /app/\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "Dockerfile.run"), []byte("FROM "+reg+"/busybox:latest\n"+
		"RUN mkdir /data && chown 123:456 /data && test \"$(stat -c %u:%g /data)\" = 123:456\n"), 0o644)
	os.Chmod(ctx, 0o755)
	vol := "-v=" + ctx + ":/ctx:ro"
	private := testutil.StartTLSBasicRegistry(t, testutil.SetupOptions{})
	kanikoAuth := filepath.Join(t.TempDir(), "config.json")
	testutil.Require(t, os.WriteFile(kanikoAuth, []byte(`{"auths":{"`+private.Addr+`":{"auth":"`+
		base64.StdEncoding.EncodeToString([]byte(private.User+":"+private.Password))+`"}}}`), 0o644))

	for _, u := range ciUsers {
		t.Run(u.name, func(t *testing.T) {
			id := strings.Split(u.user, ":")[0]
			out := d.Run(t, "--network=host", "--user="+u.user, vol, debug, "sh", "-c",
				"id -u && kiln build -q -t "+reg+"/app-"+id+":copy /ctx && kiln push -q "+reg+"/app-"+id+":copy")
			if !regexp.MustCompile(`^` + id + `\n(sha256:[0-9a-f]{64}\n){2}$`).MatchString(out) {
				t.Errorf("COPY build as %s with the default profile: %q", u.user, out)
			}
			dest := private.Ref("team/app-" + id + ":kaniko")
			out = d.Run(t, "--network=host", "--user="+u.user, vol, "-v="+kanikoAuth+":/kaniko/.docker/config.json:ro", debug,
				"sh", "-c", "/kaniko/executor --context dir:///ctx --destination "+dest+" --skip-tls-verify --digest-file /home/kiln/digest && echo digest=$(cat /home/kiln/digest)")
			if !strings.Contains(out, "digest="+private.Descriptor(t, "team/app-"+id+":kaniko").Digest.String()) {
				t.Errorf("kaniko invocation as %s: %q", u.user, out)
			}
			if strings.Contains(out, private.Password) {
				t.Errorf("the password of /kaniko/.docker/config.json in the output: %q", out)
			}
		})
	}
	out := d.Run(t, "--network=host", "--user=1000:1000", "--security-opt=seccomp=unconfined", vol, debug, "sh", "-c",
		"kiln build -q -f /ctx/Dockerfile.run /ctx")
	if !regexp.MustCompile(`sha256:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Errorf("RUN with chown to a subordinate id as 1000: %q", out)
	}
}

// remoteDigest is the manifest digest of ref in the test registry ("" if
// it is not there).
func remoteDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}
