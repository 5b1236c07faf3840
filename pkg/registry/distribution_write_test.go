package registry

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/progress"
)

// TestDistributionMounts checks kiln's own cross-repository mounts against
// the real distribution server: a store-like image whose base layers are
// only recorded sources, and a copy between repositories.
func TestDistributionMounts(t *testing.T) {
	isolateEnv(t)
	host := startDistribution(t, true)
	ctx := context.Background()
	o := fastOpts()
	o.Credentials = []Credential{{Registry: host, Username: distributionUser, Password: distributionPassword}}

	base, err := random.Image(200<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := New(o).Push(ctx, mustRef(t, host+"/library/base:1", o), base); err != nil {
		t.Fatal(err)
	}
	top, _ := random.Layer(4096, types.DockerLayer)
	derived, _ := mutate.AppendLayers(base, top)
	hide := map[v1.Hash]bool{}
	for _, h := range layerDigests(t, base) {
		hide[h] = true
	}
	rec := &recorder{}
	stats := &Stats{}
	po := o
	po.Stats, po.Progress = stats, rec
	sources := WithSources(func(h v1.Hash) []string {
		if hide[h] {
			return []string{host + "/library/base"}
		}
		return nil
	})
	if _, err := New(po).Write(ctx, &storeLike{Image: derived, hide: hide}, []name.Reference{mustRef(t, host+"/team/app:1", o)}, sources); err != nil {
		t.Fatal(err)
	}
	if rec.count(progress.Mounted, progress.KindLayer) != 3 || stats.LayerBytesDownloaded() != 0 {
		t.Errorf("want 3 mounts from library/base and nothing downloaded: %s; %+v", stats, rec.evs)
	}
	got, _, err := New(o).Image(ctx, mustRef(t, host+"/team/app:1", o), nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckLayers(t, got)

	// Copy to another repository: mounts only.
	rec.reset()
	cstats := &Stats{}
	po.Stats = cstats
	if _, err := New(po).Copy(ctx, mustRef(t, host+"/team/app:1", o), []name.Reference{mustRef(t, host+"/release/app:1.0", o)}); err != nil {
		t.Fatal(err)
	}
	if cstats.BlobBytesUploaded() != 0 || cstats.BlobBytesDownloaded() != 0 || rec.count(progress.Mounted, "") != 5 {
		t.Errorf("copy within the registry: %s; %+v", cstats, rec.evs)
	}
	t.Logf("store push: %s; copy: %s", stats, cstats)
}
