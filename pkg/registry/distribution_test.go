package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// A bcrypt (cost 4) hash of distributionPassword for the htpasswd backend.
const (
	distributionUser     = "kiln"
	distributionPassword = "kiln-real-registry-pw"
	distributionHash     = "$2a$04$7rJeZmZFjDNNMA1YVOQEueWhOUGn8EbTL1N43DY19q9NkRQW7ur3i"
)

// startDistribution runs Debian's docker-registry (CNCF distribution) on a
// free loopback port with a temporary config and storage, optionally with
// htpasswd basic auth, and returns host:port. The harness retries when
// another process takes the port first, and makes sure the registry that
// answers is this one (another package's test registry could hold the
// port, and would answer /v2/ too).
func startDistribution(t *testing.T, withAuth bool) string {
	t.Helper()
	dir := t.TempDir()
	var c harness.ServerConfig
	if withAuth {
		c.Htpasswd = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(c.Htpasswd, []byte(distributionUser+":"+distributionHash+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := harness.StartRegistryServer(filepath.Join(dir, "registry"), c)
	testutil.Require(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r.Addr
}

func TestDistribution(t *testing.T) {
	isolateEnv(t)
	host := startDistribution(t, false)
	ctx := context.Background()
	o := fastOpts()

	// Push a 3-layer image, pull it lazily, then read it.
	img, err := random.Image(300<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, host+"/kiln/base:1", o)
	if err := New(o).Push(ctx, ref, img); err != nil {
		t.Fatalf("Push: %v", err)
	}
	stats := &Stats{}
	so := o
	so.Stats = stats
	pulled, desc, err := New(so).Image(ctx, ref, nil)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if desc.Digest != testutil.Digest(t, img) {
		t.Fatalf("digest %s, want %s", desc.Digest, testutil.Digest(t, img))
	}
	if _, err := pulled.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	if stats.LayerBlobsDownloaded() != 0 || stats.LayerBytesDownloaded() != 0 {
		t.Fatalf("Image+ConfigFile fetched layers: %s", stats)
	}
	testutil.CheckLayers(t, pulled)
	if stats.LayerBlobsDownloaded() != 3 {
		t.Errorf("reading 3 layers: %s", stats)
	}

	// An image built on it, pushed to another repository, mounts the base
	// layers: no base layer is downloaded or uploaded.
	top, err := random.Layer(2048, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	lazyBase, _, err := New(o).Image(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(lazyBase, top)
	if err != nil {
		t.Fatal(err)
	}
	pushStats := &Stats{}
	po := o
	po.Stats = pushStats
	if err := New(po).Push(ctx, mustRef(t, host+"/kiln/app:1", po), derived); err != nil {
		t.Fatalf("Push derived: %v", err)
	}
	topSize, _ := top.Size()
	if pushStats.LayerBlobsDownloaded() != 0 || pushStats.BlobBytesUploaded() > topSize+16<<10 {
		t.Errorf("push of a derived image moved base layers: %s (new layer %d bytes)", pushStats, topSize)
	}

	// An index; the platform is picked.
	amd := testutil.RandomImageOn(t, 1, v1.Platform{OS: "linux", Architecture: "amd64"})
	arm := testutil.RandomImageOn(t, 1, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	iref := mustRef(t, host+"/kiln/multi:1", o)
	if err := New(o).Push(ctx, iref, idx); err != nil {
		t.Fatalf("PushIndex: %v", err)
	}
	_, desc, err = New(o).Image(ctx, iref, &v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil || desc.Digest != testutil.Digest(t, arm) {
		t.Fatalf("New(arm64).Image() = %s, %v; want %s", desc.Digest, err, testutil.Digest(t, arm))
	}

	// Error messages from a real registry.
	_, err = New(o).Fetch(ctx, mustRef(t, host+"/kiln/base:missing", o))
	if err == nil || !errors.Is(err, ErrManifestUnknown) || err.Error() != host+"/kiln/base:missing: manifest unknown" {
		t.Errorf("missing tag: %v", err)
	}
	_, err = New(o).Fetch(ctx, mustRef(t, host+"/kiln/nothing:1", o))
	if err == nil || !(errors.Is(err, ErrNameUnknown) || errors.Is(err, ErrManifestUnknown)) {
		t.Errorf("missing repository: %v", err)
	}
}

func TestDistributionLogin(t *testing.T) {
	home := isolateEnv(t)
	host := startDistribution(t, true)
	ctx := context.Background()
	o := fastOpts()

	_, err := New(o).Login(ctx, host, distributionUser, "wrong-"+distributionPassword)
	if err == nil || !strings.HasPrefix(err.Error(), "login to "+host+" failed: unauthorized") ||
		strings.Contains(err.Error(), "wrong-"+distributionPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	ref := mustRef(t, host+"/kiln/private:1", o)
	_, err = New(o).Fetch(ctx, ref)
	if err == nil || !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no credentials found for "+host) {
		t.Errorf("anonymous: %v", err)
	}

	if _, err := New(o).Login(ctx, host, distributionUser, distributionPassword); err != nil {
		t.Fatalf("Login: %v", err)
	}
	cfg := filepath.Join(home, ".docker", "config.json")
	if got := authOf(t, cfg, host); got != distributionUser+":"+distributionPassword {
		t.Fatalf("stored %q", got)
	}
	img, err := random.Image(10<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := New(o).Push(ctx, ref, img); err != nil {
		t.Fatalf("Push after login: %v", err)
	}
	if _, desc, err := New(o).Image(ctx, ref, nil); err != nil || desc.Digest != testutil.Digest(t, img) {
		t.Fatalf("Image after login: %v, %v", desc.Digest, err)
	}
	if err := New(o).Logout(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	if _, err := New(o).Fetch(ctx, ref); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("after logout: %v", err)
	}
}
