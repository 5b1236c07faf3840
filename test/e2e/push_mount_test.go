package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// TestPushMountsFromSiblingRepository: the store remembers in which
// repository of which registry each blob was pushed, so pushing the same
// image (a hotfix tag, a promotion) to another repository of that registry
// mounts every blob from the first one and uploads no byte; a store that
// never pushed it (nothing recorded) uploads them.
func TestPushMountsFromSiblingRepository(t *testing.T) {
	testutil.SkipIfShort(t)
	s := testutil.StartPlainRegistry(t)
	bc := newByteCounter(t, s.Addr)
	p := bc.addr
	dir := t.TempDir()
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"Dockerfile": []byte("FROM scratch\nCOPY big /big\nCOPY small /small\n"), "big": big, "small": []byte("s\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	kiln(t, "--root", root, "build", "--push", "-t", p+"/team/app:1", dir)
	img := s.Image(t, "team/app:1")
	cfg, layers, _ := blobDigests(t, img)

	m := bc.mark()
	kiln(t, "--root", root, "tag", p+"/team/app:1", p+"/team/app-hotfix:1")
	kiln(t, "--root", root, "push", p+"/team/app-hotfix:1")
	ex, _ := bc.since(m)
	if n := harness.UploadBytes(ex); n != 0 {
		t.Errorf("the push to a sibling repository uploaded %d bytes, want 0:\n%s", n, strings.Join(harness.UploadRequests(ex), "\n"))
	}
	for _, d := range append(layers, cfg) {
		found := false
		for _, mt := range harness.Mounts(ex) {
			found = found || mt.Repo == "team/app-hotfix" && mt.From == "team/app" && mt.Digest == d.String()
		}
		if !found {
			t.Errorf("%s was not mounted into team/app-hotfix from team/app; mounts %v", d, harness.Mounts(ex))
		}
	}
	if got := s.Image(t, "team/app-hotfix:1"); got == nil {
		t.Fatal("no team/app-hotfix:1")
	}

	// A second sibling mounts too (from either repository), and a store
	// that never pushed the image uploads what it holds.
	m = bc.mark()
	kiln(t, "--root", root, "tag", p+"/team/app:1", p+"/other/app:1")
	kiln(t, "--root", root, "push", p+"/other/app:1")
	if ex, _ := bc.since(m); harness.UploadBytes(ex) != 0 {
		t.Errorf("the push to a third repository uploaded %d bytes, want 0", harness.UploadBytes(ex))
	}
	fresh := t.TempDir()
	kiln(t, "--root", fresh, "build", "-t", p+"/team/fresh:1", dir)
	m = bc.mark()
	kiln(t, "--root", fresh, "push", p+"/team/fresh:1")
	if ex, _ := bc.since(m); harness.UploadBytes(ex) == 0 && len(harness.Mounts(ex)) == 0 {
		// The registry already has the blobs in other repositories: the
		// fresh store, knowing none, must still get them there.
		t.Errorf("the fresh store's push neither uploaded nor mounted anything: %v", harness.UploadRequests(ex))
	}
}
