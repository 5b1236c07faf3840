package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// byteCounter is kiln's view of a registry through two proxies: a
// recording proxy (uploads, mounts, manifest PUTs, body bytes both ways)
// in front of testutil.CountingProxy (blob bytes downloaded), in front of
// the registry.
type byteCounter struct {
	addr   string
	rec    *harness.FaultProxy
	counts *testutil.Counts
}

// mark is a point in a byteCounter's history.
type mark struct {
	exchanges int
	blobs     map[string]int64
}

func newByteCounter(t *testing.T, registry string) *byteCounter {
	t.Helper()
	counting, counts := testutil.CountingProxy(t, registry)
	rec := testutil.RecordingProxy(t, counting)
	return &byteCounter{addr: rec.Addr, rec: rec, counts: counts}
}

func (b *byteCounter) mark() mark {
	return mark{exchanges: len(b.rec.Exchanges()), blobs: b.counts.Blobs()}
}

// since returns the exchanges after m and the blob bytes downloaded since
// m per digest, as the counting proxy saw them.
func (b *byteCounter) since(m mark) ([]harness.Exchange, map[string]int64) {
	ex := b.rec.Exchanges()[m.exchanges:]
	got := map[string]int64{}
	for d, n := range b.counts.Blobs() {
		if n-m.blobs[d] != 0 {
			got[d] = n - m.blobs[d]
		}
	}
	return ex, got
}

// blobDigests returns the config and layer digests of an image.
func blobDigests(t *testing.T, img v1.Image) (cfg v1.Hash, layers []v1.Hash, sizes map[v1.Hash]int64) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	sizes = map[v1.Hash]int64{m.Config.Digest: m.Config.Size}
	for _, l := range m.Layers {
		layers = append(layers, l.Digest)
		sizes[l.Digest] = l.Size
	}
	return m.Config.Digest, layers, sizes
}

// layersBut is img's layer digests without those of the instructions
// whose history starts with instruction.
func layersBut(t *testing.T, img v1.Image, instruction string) []v1.Hash {
	t.Helper()
	_, layers, _ := blobDigests(t, img)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	i := 0
	for _, h := range cfg.History {
		if h.EmptyLayer {
			continue
		}
		if i < len(layers) && !strings.HasPrefix(h.CreatedBy, instruction+" ") {
			out = append(out, layers[i])
		}
		i++
	}
	if len(out) == 0 || len(out) == len(layers) {
		t.Fatalf("history of %d layers has no %s layer or only those: %+v", len(layers), instruction, cfg.History)
	}
	return out
}

func uploadedDigests(ex []harness.Exchange) []string {
	var out []string
	for _, u := range harness.Uploads(ex) {
		out = append(out, u.Digest)
	}
	slices.Sort(out)
	return out
}

// TestRegistryBytes counts what kiln moves, through counting proxies in
// front of a docker-registry, in the registry flows CI pipelines repeat:
// a COPY-only build pushed to its base's registry, a re-push, a promote
// within the registry, a build and push as separate steps, and the rebuild
// after one application class changed.
func TestRegistryBytes(t *testing.T) {
	testutil.SkipIfShort(t)
	s := testutil.StartPlainRegistry(t)
	base := testutil.DebianImage(t)
	s.Push(t, "library/debian:bookworm", base)
	baseCfg, baseLayers, baseSizes := blobDigests(t, base)
	baseLayer := baseLayers[0].String()
	baseLayerSize := baseSizes[baseLayers[0]]
	java := workload(t, "java-layers")
	bc := newByteCounter(t, s.Addr)
	p := bc.addr
	u := newKilnUser(t) // one CI cache (store) for every step
	args := []string{"--build-arg", "REGISTRY=" + p, "--build-arg", "PIPELINE_ID_ARG=123"}

	// noBaseBytes fails the test if the base layer was downloaded.
	noBaseBytes := func(t *testing.T, ex []harness.Exchange, got map[string]int64) {
		t.Helper()
		// A store without the base's path index reads the layer once to
		// make it (COPY decides destinations from the base's files, as
		// BuildKit does); never more, and never for the push.
		if n := got[baseLayer]; n != 0 && n != baseLayerSize {
			t.Errorf("downloaded %d bytes of the base layer %s (counting proxy), want 0 or one copy (%d) for its index", n, baseLayer, baseLayerSize)
		}
		if n := harness.BlobGetBytes(ex)[baseLayer]; n != 0 && n != baseLayerSize {
			t.Errorf("downloaded %d bytes of the base layer %s (recording proxy), want 0 or one copy (%d) for its index", n, baseLayer, baseLayerSize)
		}
	}
	// mounted fails the test unless digest was mounted into repo from
	// library/debian.
	mounted := func(t *testing.T, ex []harness.Exchange, repo, digest, from string) {
		t.Helper()
		for _, m := range harness.Mounts(ex) {
			if m.Repo == repo && m.Digest == digest && m.From == from {
				return
			}
		}
		t.Errorf("%s was not mounted into %s from %s; upload requests:\n%s", digest, repo, from,
			strings.Join(harness.UploadRequests(ex), "\n"))
	}

	t.Run("build --push", func(t *testing.T) {
		m := bc.mark()
		u.ok(t, append(append([]string{"build", "--push"}, args...), "-t", p+"/team/app:1", java)...)
		ex, got := bc.since(m)
		noBaseBytes(t, ex, got)
		for d := range got {
			if d != baseCfg.String() && d != baseLayer {
				t.Errorf("the build downloaded blob %s (%d bytes): only the base's config (and its layer, once, for the index) may be", d, got[d])
			}
		}
		mounted(t, ex, "team/app", baseLayer, "library/debian")
		cfg, layers, sizes := blobDigests(t, s.Image(t, "team/app:1"))
		var want []string
		var wantBytes int64
		for _, l := range append(layers[1:], cfg) {
			want = append(want, l.String())
			wantBytes += sizes[l]
		}
		slices.Sort(want)
		if got := uploadedDigests(ex); !slices.Equal(got, want) {
			t.Errorf("uploaded %v, want every blob but the base layer: %v", got, want)
		}
		if n := harness.UploadBytes(ex); n != wantBytes {
			t.Errorf("upload bytes %d, want %d (each new blob once)", n, wantBytes)
		}
		t.Logf("build --push: uploaded %d blobs, %d bytes; mounted %d; downloaded %d blob bytes (the base config)",
			len(harness.Uploads(ex)), harness.UploadBytes(ex), len(harness.Mounts(ex)), sum(got))
	})

	t.Run("re-push", func(t *testing.T) {
		m := bc.mark()
		u.ok(t, "push", p+"/team/app:1")
		ex, got := bc.since(m)
		if reqs := harness.UploadRequests(ex); len(reqs) != 0 {
			t.Errorf("re-push made upload requests:\n%s", strings.Join(reqs, "\n"))
		}
		if n := sum(got); n != 0 {
			t.Errorf("re-push downloaded %d blob bytes: %v", n, got)
		}
		puts := harness.ManifestPuts(ex)
		if len(puts) > 1 {
			t.Errorf("re-push PUT %d manifests: %v", len(puts), puts)
		}
		var sent int64
		for _, e := range ex {
			sent += e.ReqBytes
		}
		if mf := s.Descriptor(t, "team/app:1").Size; sent != mf*int64(len(puts)) {
			t.Errorf("re-push sent %d request body bytes, want only the manifest (%d bytes) per PUT (%d)", sent, mf, len(puts))
		}
		t.Logf("re-push: %d requests, %d manifest PUTs, %d request body bytes", len(ex), len(puts), sent)
	})

	t.Run("copy", func(t *testing.T) {
		m := bc.mark()
		r := u.ok(t, "copy", p+"/team/app:1", p+"/prod/app:1")
		ex, got := bc.since(m)
		cfg, layers, _ := blobDigests(t, s.Image(t, "team/app:1"))
		for _, l := range layers {
			if got[l.String()] != 0 || harness.BlobGetBytes(ex)[l.String()] != 0 {
				t.Errorf("copy downloaded %d bytes of layer %s, want 0", got[l.String()], l)
			}
			if !slices.ContainsFunc(harness.Mounts(ex), func(m harness.Mount) bool {
				return m.Digest == l.String() && m.Repo == "prod/app" && m.From == "team/app"
			}) {
				t.Errorf("layer %s was not mounted from team/app", l)
			}
		}
		if n := harness.UploadBytes(ex); n != 0 {
			t.Errorf("copy uploaded %d bytes, want 0 (mounts only):\n%s", n, strings.Join(harness.UploadRequests(ex), "\n"))
		}
		want := s.Descriptor(t, "team/app:1").Digest
		if d := pushedDigest(t, r, p+"/prod/app:1"); d != want.String() {
			t.Errorf("copy printed %s, want %s", d, want)
		}
		if d, _ := s.VerifyBlobs(t, "prod/app:1"); d != want {
			t.Errorf("prod/app:1 is %s, want %s", d, want)
		}
		t.Logf("copy: %d layer bytes downloaded, %d bytes uploaded, %d mounts, config %s downloaded %d bytes",
			sum(got)-got[cfg.String()], harness.UploadBytes(ex), len(harness.Mounts(ex)), cfg, got[cfg.String()])
	})

	t.Run("build then push", func(t *testing.T) {
		// A fresh CI job: an empty store, build and push as two commands.
		v := newKilnUser(t)
		m := bc.mark()
		v.ok(t, append(append([]string{"build"}, args...), "-t", p+"/team/sep:1", java)...)
		v.ok(t, "push", p+"/team/sep:1")
		ex, got := bc.since(m)
		noBaseBytes(t, ex, got)
		mounted(t, ex, "team/sep", baseLayer, "library/debian")
		s.VerifyBlobs(t, "team/sep:1")
		// Without --timestamp the configs differ (created times); the
		// layers of the same inputs do not, but for WORKDIR's: its
		// directory carries the build's time, as with BuildKit, and a
		// fresh store has no cached layer of it.
		sep := layersBut(t, s.Image(t, "team/sep:1"), "WORKDIR")
		if app := layersBut(t, s.Image(t, "team/app:1"), "WORKDIR"); !slices.Equal(sep, app) {
			t.Errorf("team/sep:1 has layers %v, team/app:1 (same inputs) %v", sep, app)
		}
		t.Logf("build, then push: uploaded %d blobs, %d bytes; mounted %d; downloaded %d blob bytes",
			len(harness.Uploads(ex)), harness.UploadBytes(ex), len(harness.Mounts(ex)), sum(got))
	})

	t.Run("touch-app", func(t *testing.T) {
		work := copyTree(t, java)
		if out, err := exec.Command(filepath.Join(work, "touch-app"), "e2e-bytes").CombinedOutput(); err != nil {
			t.Fatalf("touch-app: %v\n%s", err, out)
		}
		m := bc.mark()
		u.ok(t, append(append([]string{"build", "--push"}, args...), "-t", p+"/team/app:2", work)...)
		ex, got := bc.since(m)
		noBaseBytes(t, ex, got)
		_, before, _ := blobDigests(t, s.Image(t, "team/app:1"))
		cfg, after, sizes := blobDigests(t, s.Image(t, "team/app:2"))
		if len(after) != len(before) {
			t.Fatalf("app:2 has %d layers, app:1 %d", len(after), len(before))
		}
		var changed []v1.Hash
		for _, l := range after {
			if !slices.Contains(before, l) {
				changed = append(changed, l)
			}
		}
		if len(changed) != 1 {
			t.Fatalf("app:2 differs from app:1 in %d layers, want 1 (the application layer): %v", len(changed), changed)
		}
		want := []string{changed[0].String(), cfg.String()}
		slices.Sort(want)
		if got := uploadedDigests(ex); !slices.Equal(got, want) {
			t.Errorf("uploaded %v, want exactly the changed layer and the config %v", got, want)
		}
		if n, w := harness.UploadBytes(ex), sizes[changed[0]]+sizes[cfg]; n != w {
			t.Errorf("upload bytes %d, want %d (the changed layer and the config)", n, w)
		}
		t.Logf("touch-app rebuild: uploaded %d blobs, %d bytes (layer %s: %d bytes, config %d bytes); downloaded %d blob bytes",
			len(harness.Uploads(ex)), harness.UploadBytes(ex), changed[0], sizes[changed[0]], sizes[cfg], sum(got))
	})
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// copyTree copies a directory (cp -a) to a new temporary directory and
// returns the copy.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
	return dst
}
