package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil"
)

// startSetups starts the registry set-ups of the end-to-end tests: plain
// HTTP on loopback; TLS with a self-signed CA and htpasswd basic auth;
// bearer-token auth with the test token service, plain and over TLS.
func startSetups(t *testing.T) []*testutil.RegistrySetup {
	t.Helper()
	testutil.RequireProgram(t, "/usr/bin/docker-registry", "docker-registry")
	return []*testutil.RegistrySetup{
		testutil.StartPlainRegistry(t),
		testutil.StartTLSBasicRegistry(t, testutil.SetupOptions{}),
		testutil.StartTokenRegistry(t, testutil.SetupOptions{}, false),
		testutil.StartTokenRegistry(t, testutil.SetupOptions{}, true),
	}
}

// TestRegistrySetups runs pull, tag, push (to its own name, to a
// destination, -q, --digestfile), copy, build --push and platform pulls
// against each registry set-up as a user would, logged in where the
// registry needs it, and checks every result in the registry itself.
func TestRegistrySetups(t *testing.T) {
	testutil.SkipIfShort(t)
	for _, s := range startSetups(t) {
		t.Run(s.Name, func(t *testing.T) { registryRoundTrip(t, s) })
	}
}

func registryRoundTrip(t *testing.T, s *testutil.RegistrySetup) {
	base := testutil.BusyboxImage(t)
	s.Push(t, "library/busybox:1", base)
	baseDigest, _ := base.Digest()
	idx := testutil.PlatformIndex(t)
	idxRef, _ := name.ParseReference(s.Ref("library/multi:1"))
	if err := remote.WriteIndex(idxRef, idx, s.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	u := newKilnUser(t)
	f := s.KilnFlags()
	kl := func(args ...string) run { t.Helper(); return u.ok(t, append(f, args...)...) }

	if s.User != "" {
		// Without credentials the registry refuses, naming itself.
		r := u.fails(t, append(f, "pull", s.Ref("library/busybox:1"))...)
		if !strings.Contains(r.stderr, s.Addr) || !hasWord(r.stderr, "unauthorized") {
			t.Errorf("pull without login: stderr does not name %s and say unauthorized\n%s", s.Addr, r)
		}
		u.login(t, s)
	}

	// pull, tag, push to the image's own names.
	r := kl("pull", s.Ref("library/busybox:1"))
	if !strings.Contains(r.stdout, s.Ref("library/busybox:1")) {
		t.Errorf("pull does not print the image name\n%s", r)
	}
	kl("tag", s.Ref("library/busybox:1"), s.Ref("team/app:v1"), s.Ref("team/app:v2"))
	r = kl("push", s.Ref("team/app:v1"))
	if d := pushedDigest(t, r, s.Ref("team/app:v1")); d != baseDigest.String() {
		t.Errorf("push printed %s; the pulled image is %s", d, baseDigest)
	}
	if d, blobs := s.VerifyBlobs(t, "team/app:v1"); d != baseDigest || len(blobs) != 2 {
		t.Errorf("team/app:v1 is %s with %d blobs, want %s with 2", d, len(blobs), baseDigest)
	}

	// -q prints the digest alone; --digestfile holds it.
	df := filepath.Join(u.home, "out", "digest")
	r = kl("push", "-q", "--digestfile", df, s.Ref("team/app:v2"))
	if strings.TrimSpace(r.stdout) != baseDigest.String() {
		t.Errorf("push -q printed %q, want the digest %s alone\n%s", r.stdout, baseDigest, r)
	}
	if b, err := os.ReadFile(df); err != nil || strings.TrimSpace(string(b)) != baseDigest.String() {
		t.Errorf("--digestfile holds %q (%v), want %s", b, err, baseDigest)
	}

	// push IMAGE DEST.
	r = kl("push", s.Ref("team/app:v1"), s.Ref("other/app:pushed"))
	pushedDigest(t, r, s.Ref("other/app:pushed"))
	if d, _ := s.VerifyBlobs(t, "other/app:pushed"); d != baseDigest {
		t.Errorf("other/app:pushed is %s, want %s", d, baseDigest)
	}

	// copy (promote) to another repository and tag.
	r = kl("copy", s.Ref("team/app:v1"), s.Ref("prod/app:release"))
	if d := pushedDigest(t, r, s.Ref("prod/app:release")); d != baseDigest.String() {
		t.Errorf("copy printed %s, want %s", d, baseDigest)
	}
	if d, _ := s.VerifyBlobs(t, "prod/app:release"); d != baseDigest {
		t.Errorf("prod/app:release is %s, want %s", d, baseDigest)
	}

	// build --push on a base from the same registry, with --digestfile.
	ctx := t.TempDir()
	writeFile(t, filepath.Join(ctx, "Dockerfile"), "FROM "+s.Ref("library/busybox:1")+"\nCOPY hello.txt /hello.txt\n")
	writeFile(t, filepath.Join(ctx, "hello.txt"), "hello from "+s.Name+"\n")
	bdf := filepath.Join(u.home, "build-digest")
	kl("build", "--push", "--digestfile", bdf, "-t", s.Ref("team/built:1"), "-t", s.Ref("team/built:2"), ctx)
	b, err := os.ReadFile(bdf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"team/built:1", "team/built:2"} {
		d, blobs := s.VerifyBlobs(t, tag)
		if d.String() != strings.TrimSpace(string(b)) || len(blobs) != 3 {
			t.Errorf("%s is %s with %d blobs; build --digestfile says %s, want 3 blobs", tag, d, len(blobs), b)
		}
	}
	img := s.Image(t, "team/built:1")
	layers, _ := img.Layers()
	baseLayers, _ := base.Layers()
	l0, _ := layers[0].Digest()
	b0, _ := baseLayers[0].Digest()
	if l0 != b0 {
		t.Errorf("built image's first layer %s, want the base's %s", l0, b0)
	}
	tree := testutil.ImageTree(t, img)
	if got := treeField(t, tree, "/hello.txt", 5); got != sha256Hex("hello from "+s.Name+"\n") {
		t.Errorf("/hello.txt in the pushed image has sha256 %s", got)
	}

	// pull --platform picks one image of an index; --all-platforms keeps
	// the index (pushing it back gives the same digest).
	kl("pull", "--platform", "linux/arm64", s.Ref("library/multi:1"))
	kl("push", s.Ref("library/multi:1"), s.Ref("team/multi:arm64"))
	cf, err := s.Image(t, "team/multi:arm64").ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" {
		t.Errorf("pull --platform linux/arm64 stored a %s/%s image", cf.OS, cf.Architecture)
	}
	kl("pull", "--all-platforms", s.Ref("library/multi:1"))
	kl("push", s.Ref("library/multi:1"), s.Ref("team/multi:all"))
	if d, blobs := s.VerifyBlobs(t, "team/multi:all"); d != idxDigest || len(blobs) != 4 {
		t.Errorf("team/multi:all is %s with %d blobs, want the index %s with 4", d, len(blobs), idxDigest)
	}

	// inspect shows nothing of the credentials either.
	kl("inspect", s.Ref("team/built:1"))
	u.noSecrets(t, s.Password)
	if s.Token != nil {
		u.noSecrets(t, s.Token.Tokens()...)
	}
}
