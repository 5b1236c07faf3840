package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/pkg/store"
)

// storedManifest reads the manifest (or index) that ref names in the store
// under root.
func storedManifest(t *testing.T, root, ref string) (mediaType string, annotations map[string]string, children []v1.Descriptor) {
	t.Helper()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.Resolve(ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	rc, err := st.OpenBlob(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var m struct {
		MediaType   string            `json:"mediaType"`
		Annotations map[string]string `json:"annotations"`
		Manifests   []v1.Descriptor   `json:"manifests"`
	}
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m.MediaType, m.Annotations, m.Manifests
}

// childAnnotations reads the annotations of a manifest the store holds.
func childAnnotations(t *testing.T, root string, d v1.Descriptor) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "blobs", "sha256", d.Digest.Hex))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Annotations
}

// The buildx and podman spellings of build flags: what each does, and the
// error for an unsupported value or a misspelling. Each row builds FROM
// scratch into its own store.
func TestBuildFlagTable(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	base := reg.host + "/library/base:1"
	pushVersion(t, base, "1")
	authfile := filepath.Join(t.TempDir(), "auth.json")
	os.WriteFile(authfile, []byte(`{"auths":{"`+reg.host+`":{"auth":"YWxpY2U6c2VjcmV0"}}}`), 0o600) // alice:secret
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL a=b\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile.base"), []byte("FROM "+base+"\nLABEL a=b\n"), 0o644)
	const multi = "--platform=linux/amd64,linux/arm64"
	for _, c := range []struct {
		name    string
		args    []string
		auth    bool   // the registry demands alice:secret
		wantErr string // "" when the build must work
		stderr  string // what stderr must say
		check   func(t *testing.T, root string)
	}{
		{name: "annotation default is manifest", args: []string{"--annotation", "org.opencontainers.image.title=app"},
			check: func(t *testing.T, root string) {
				if _, a, _ := storedManifest(t, root, "index.docker.io/library/out:1"); a["org.opencontainers.image.title"] != "app" {
					t.Errorf("manifest annotations %v", a)
				}
			}},
		{name: "annotation index and per-platform manifest", args: []string{multi, "--annotation", "index:k=idx", "--annotation", "manifest[linux/arm64]:k=arm", "--annotation", "manifest-descriptor:d=v"},
			check: func(t *testing.T, root string) {
				_, a, kids := storedManifest(t, root, "index.docker.io/library/out:1")
				if a["k"] != "idx" || len(kids) != 2 {
					t.Fatalf("index annotations %v, %d manifests", a, len(kids))
				}
				for _, k := range kids {
					want := ""
					if k.Platform.Architecture == "arm64" {
						want = "arm"
					}
					if got := childAnnotations(t, root, k)["k"]; got != want || k.Annotations["d"] != "v" {
						t.Errorf("%s: manifest k=%q (want %q), descriptor %v", k.Platform.Architecture, got, want, k.Annotations)
					}
				}
			}},
		{name: "annotation index on one platform", args: []string{"--annotation", "index:k=v"}, wantErr: "a single-platform build has no index"},
		{name: "annotation without value", args: []string{"--annotation", "novalue"}, wantErr: `--annotation "novalue": want [TYPE:]KEY=VALUE`},
		{name: "annotation misspelt type", args: []string{"--annotation", "manifests:k=v"}, wantErr: `unknown type "manifests"`},
		{name: "annotation docker format", args: []string{"--format", "docker", "--annotation", "k=v"}, wantErr: "docker's manifest format has no annotations"},
		{name: "format docker (podman)", args: []string{"--format=docker"},
			check: func(t *testing.T, root string) {
				if mt, _, _ := storedManifest(t, root, "index.docker.io/library/out:1"); mt != "application/vnd.docker.distribution.manifest.v2+json" {
					t.Errorf("--format docker: %s", mt)
				}
			}},
		{name: "format oci", args: []string{"--format", "oci"},
			check: func(t *testing.T, root string) {
				if mt, _, _ := storedManifest(t, root, "index.docker.io/library/out:1"); mt != "application/vnd.oci.image.manifest.v1+json" {
					t.Errorf("--format oci: %s", mt)
				}
			}},
		{name: "format misspelt", args: []string{"--format", "v2s3"}, wantErr: `unknown image format "v2s3"`},
		{name: "creds (podman)", args: []string{"-f", filepath.Join(dir, "Dockerfile.base"), "--creds", "alice:secret"}, auth: true,
			stderr: "A password on the command line (--creds)"},
		{name: "creds wrong", args: []string{"--retry", "0", "-f", filepath.Join(dir, "Dockerfile.base"), "--creds", "alice:wrong"}, auth: true, wantErr: "unauthorized"},
		{name: "creds without user", args: []string{"--creds", ":pw"}, wantErr: "--creds"},
		{name: "no creds", args: []string{"--retry", "0", "-f", filepath.Join(dir, "Dockerfile.base")}, auth: true, wantErr: "unauthorized"},
		{name: "authfile (podman)", args: []string{"--authfile", authfile, "-f", filepath.Join(dir, "Dockerfile.base")}, auth: true},
		{name: "tls-verify=true refuses plain HTTP", args: []string{"--retry", "0", "--tls-verify=true", "-f", filepath.Join(dir, "Dockerfile.base")}, wantErr: "speaks plain HTTP, not HTTPS"},
		{name: "tls-verify=false", args: []string{"--tls-verify=false", "-f", filepath.Join(dir, "Dockerfile.base")}},
		{name: "jobs (podman)", args: []string{"--jobs", "2"}},
		{name: "jobs 0", args: []string{"--jobs", "0"}, wantErr: "--jobs 0: want at least 1"},
		{name: "driver (buildx)", args: []string{"--driver", "docker-container"}, stderr: "--driver docker-container is ignored"},
		{name: "misspelt flag", args: []string{"--anotation", "k=v"}, wantErr: "unknown flag: --anotation"},
		{name: "squash (podman)", args: []string{"--squash"}},
		{name: "squash-all (podman)", args: []string{"--squash-all", "-f", filepath.Join(dir, "Dockerfile.base")}},
		{name: "squash and squash-all", args: []string{"--squash", "--squash-all"}, wantErr: "--squash and --squash-all: give one"},
		{name: "squash=false", args: []string{"--squash=false"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.auth {
				requireBasic(reg, "alice", "secret")
				defer func() { reg.before = nil }()
			}
			root := t.TempDir()
			args := append(append([]string{"build", "-t", "out:1"}, c.args...), dir)
			_, errOut, err := run(t, root, "", args...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("%v: %v, want %q", c.args, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %v\n%s", c.args, err, errOut)
			}
			if !strings.Contains(errOut, c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, errOut)
			}
			if c.check != nil {
				c.check(t, root)
			}
		})
	}
}

// buildx's --build-context: a directory for COPY --from, another image
// for FROM (docker-image://), an OCI layout's image (oci-layout://); what
// it cannot be is an error naming it.
func TestBuildContexts(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	pushVersion(t, reg.host+"/library/base:1", "1")
	root := t.TempDir()
	extra := t.TempDir()
	os.WriteFile(filepath.Join(extra, "hello.txt"), []byte("from the named context\n"), 0o644)
	layoutDir := t.TempDir()
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Labels = map[string]string{"v": "3"}
	img, _ = mutate.ConfigFile(img, cf)
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v3"})); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(df string) { os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644) }

	out := t.TempDir()
	write("FROM scratch\nCOPY --from=extra hello.txt /hello.txt\n")
	if _, errOut, err := run(t, root, "", "build", "--build-context", "extra="+extra, "-o", "type=local,dest="+out, dir); err != nil {
		t.Fatalf("dir context: %v\n%s", err, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "hello.txt")); string(b) != "from the named context\n" {
		t.Errorf("COPY --from a directory context: %q", b)
	}
	write("FROM alpine\nLABEL built=yes\n")
	if _, errOut, err := run(t, root, "", "build", "-t", "out:1", "--build-context", "alpine=docker-image://"+reg.host+"/library/base:1", dir); err != nil {
		t.Fatalf("docker-image context: %v\n%s", err, errOut)
	}
	if v := builtLabel(t, root, "out:1"); v != "1" {
		t.Errorf("FROM alpine with alpine=docker-image://base:1: label v=%q", v)
	}
	for _, ref := range []string{"oci-layout://" + layoutDir + ":v3", "oci-layout://" + layoutDir} {
		if _, errOut, err := run(t, root, "", "build", "-t", "out:2", "--build-context", "alpine="+ref, dir); err != nil {
			t.Fatalf("%s: %v\n%s", ref, err, errOut)
		}
		if v := builtLabel(t, root, "out:2"); v != "3" {
			t.Errorf("FROM alpine with alpine=%s: label v=%q", ref, v)
		}
	}
	for _, c := range []struct {
		df   string
		args []string
		want string
	}{
		{"FROM scratch\n", []string{"--build-context", "extra"}, "want NAME=DIR"},
		{"FROM scratch\n", []string{"--build-context", "src=https://example.com/repo.git"}, "not git or HTTP contexts"},
		{"FROM scratch\n", []string{"--build-context", "src=" + filepath.Join(extra, "absent")}, "no such file or directory"},
		{"FROM scratch\n", []string{"--build-context", "src=" + filepath.Join(extra, "hello.txt")}, "is not a directory"},
		{"FROM scratch\n", []string{"--build-context", "src=oci-layout://" + extra}, "is not an OCI layout"},
		{"FROM scratch\n", []string{"--build-context", "a=" + extra, "--build-context", "a=" + extra}, "--build-context a: given twice"},
		{"FROM alpine\n", []string{"--build-context", "alpine=oci-layout://" + layoutDir + ":absent"}, "no image absent in the layout"},
		{"FROM scratch\n", []string{"--build-contexts", "a=" + extra}, "unknown flag: --build-contexts"},
	} {
		write(c.df)
		if _, _, err := run(t, root, "", append(append([]string{"build"}, c.args...), dir)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// A --build-context named like a stage replaces the stage, as in
// BuildKit's dockerfile frontend (dockerfile2llb: a stage whose name has
// a named context becomes that context; its FROM is not resolved and its
// instructions are not run): FROM NAME, COPY --from=NAME (by name or by
// the stage's index) and --target NAME get the context. A directory
// context answers COPY --from=NAME.
func TestBuildContextReplacesStage(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	pushVersion(t, reg.host+"/library/ctx:1", "ctx")
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "stage.txt"), []byte("from the stage\n"), 0o644)
	extra := t.TempDir()
	os.WriteFile(filepath.Join(extra, "stage.txt"), []byte("from the directory\n"), 0o644)
	// The stage's own FROM names an image no registry has, and its COPY a
	// file the context lacks: replaced, neither is looked at.
	const df = "FROM %s AS base\nLABEL v=stage\nCOPY %s /stage.txt\n" +
		"FROM scratch AS files\nCOPY --from=base /stage.txt /by-name.txt\nCOPY --from=0 /stage.txt /by-index.txt\n" +
		"FROM base AS final\nLABEL built=yes\n"
	write := func(from, file string) {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fmt.Sprintf(df, from, file)), 0o644)
	}

	// Without a context: the stage.
	write("scratch", "stage.txt")
	out := t.TempDir()
	if _, errOut, err := run(t, root, "", "build", "--target", "files", "-o", "type=local,dest="+out, dir); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, f := range []string{"by-name.txt", "by-index.txt"} {
		if b, _ := os.ReadFile(filepath.Join(out, f)); string(b) != "from the stage\n" {
			t.Errorf("no context: %s is %q", f, b)
		}
	}

	// An image context: FROM base is the image (its label, not the
	// stage's), and so is --target base.
	write(reg.host+"/absent/image:1", "absent.txt")
	ctx := "base=docker-image://" + reg.host + "/library/ctx:1"
	for _, target := range []string{"final", "base"} {
		if _, errOut, err := run(t, root, "", "build", "-t", "out:"+target, "--target", target, "--build-context", ctx, dir); err != nil {
			t.Fatalf("--target %s, %s: %v\n%s", target, ctx, err, errOut)
		}
		if v := builtLabel(t, root, "out:"+target); v != "ctx" {
			t.Errorf("--target %s with %s: label v=%q, want the image's", target, ctx, v)
		}
	}

	// A directory context: COPY --from=base and --from=0 read it.
	out = t.TempDir()
	if _, errOut, err := run(t, root, "", "build", "--target", "files", "--build-context", "base="+extra, "-o", "type=local,dest="+out, dir); err != nil {
		t.Fatalf("base=DIR: %v\n%s", err, errOut)
	}
	for _, f := range []string{"by-name.txt", "by-index.txt"} {
		if b, _ := os.ReadFile(filepath.Join(out, f)); string(b) != "from the directory\n" {
			t.Errorf("base=DIR: COPY --from=base gave %s %q", f, b)
		}
	}
	// FROM base: the directory is the stage's filesystem (BuildKit's
	// empty image with the directory's files), its .dockerignore applied.
	os.WriteFile(filepath.Join(extra, ".dockerignore"), []byte("secret.txt\n"), 0o644)
	os.WriteFile(filepath.Join(extra, "secret.txt"), []byte("no\n"), 0o644)
	out = t.TempDir()
	if _, errOut, err := run(t, root, "", "build", "--target", "final", "--build-context", "base="+extra, "-o", "type=local,dest="+out, dir); err != nil {
		t.Fatalf("FROM base, base=DIR: %v\n%s", err, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "stage.txt")); string(b) != "from the directory\n" {
		t.Errorf("FROM base, base=DIR: /stage.txt is %q", b)
	}
	if _, err := os.Stat(filepath.Join(out, "secret.txt")); err == nil {
		t.Error("FROM base, base=DIR: the directory's .dockerignore was not applied")
	}
}
