package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/progress"
)

// recorder collects progress events.
type recorder struct {
	mu  sync.Mutex
	evs []progress.Event
}

func (r *recorder) Report(e progress.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

func (r *recorder) Close() error { return nil }

// count counts events with action (and kind, if not empty).
func (r *recorder) count(action progress.Action, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.evs {
		if e.Action == action && (kind == "" || e.Kind == kind) {
			n++
		}
	}
	return n
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.evs = nil
	r.mu.Unlock()
}

// storeLike stands for a local store image whose base layers stayed in
// their registry: those layers cannot be read and are no MountableLayers.
type storeLike struct {
	v1.Image
	hide map[v1.Hash]bool
}

func (s *storeLike) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := s.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	if ml, ok := l.(*remote.MountableLayer); ok {
		l = ml.Layer
	}
	if s.hide[h] {
		return unreadable{l}, nil
	}
	return l, nil
}

type unreadable struct{ v1.Layer }

func (unreadable) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("not in the local store")
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func refs(t *testing.T, o Options, ss ...string) []name.Reference {
	t.Helper()
	var out []name.Reference
	for _, s := range ss {
		out = append(out, mustRef(t, s, o))
	}
	return out
}

// indexOf is the position of the first log entry with prefix, or -1.
func indexOf(log []string, prefix string, last bool) int {
	at := -1
	for i, e := range log {
		if strings.HasPrefix(e, prefix) {
			at = i
			if !last {
				return i
			}
		}
	}
	return at
}

func TestWriteMountsSourcedLayers(t *testing.T) {
	isolateEnv(t)
	host, sc := newScopedRegistry(t, nil)
	base := seedImage(t, host+"/team/base:1", nil, 64<<10, 2)
	top, err := random.Layer(4096, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, top)
	if err != nil {
		t.Fatal(err)
	}
	hide := map[v1.Hash]bool{}
	for _, h := range layerDigests(t, base) {
		hide[h] = true
	}
	img := &storeLike{Image: derived, hide: hide}
	sources := func(h v1.Hash) []string {
		if hide[h] {
			return []string{host + "/team/base"}
		}
		return nil
	}
	rec := &recorder{}
	stats := &Stats{}
	o := fastOpts()
	o.Stats, o.Progress = stats, rec
	desc, err := New(o).Write(context.Background(), img, refs(t, o, host+"/team/app:1", host+"/team/app:latest"), WithSources(sources))
	if err != nil {
		t.Fatal(err)
	}
	if want := testutil.Digest(t, derived); desc.Digest != want {
		t.Errorf("pushed %s, want %s", desc.Digest, want)
	}
	topSize, _ := top.Size()
	cfg, _ := derived.RawConfigFile()
	if got := sc.mounts.Load(); got != 2 {
		t.Errorf("%d mounts, want the 2 base layers: %s", got, sc)
	}
	if stats.LayerBlobsDownloaded() != 0 || stats.LayerBytesDownloaded() != 0 {
		t.Errorf("push downloaded %d layers (%d bytes); sourced layers must be mounted", stats.LayerBlobsDownloaded(), stats.LayerBytesDownloaded())
	}
	if up, want := stats.BlobBytesUploaded(), topSize+int64(len(cfg)); up != want {
		t.Errorf("uploaded %d blob bytes, want %d (the new layer and the config)", up, want)
	}
	if rec.count(progress.Mounted, progress.KindLayer) != 2 || rec.count(progress.Done, progress.KindLayer) != 1 ||
		rec.count(progress.Done, progress.KindConfig) != 1 || rec.count(progress.Manifest, "") != 2 {
		t.Errorf("events: %+v", rec.evs)
	}
	for _, e := range rec.evs {
		if e.Action == progress.Mounted && e.From != "team/base" {
			t.Errorf("mounted from %q", e.From)
		}
	}
	log := sc.events()
	if first, lastBlob := indexOf(log, "PUT manifest team/app", false), max(indexOf(log, "PUT blob team/app", true), indexOf(log, "MOUNT team/app", true)); first < lastBlob {
		t.Errorf("a manifest was put before every blob: %v", log)
	}
	for _, tag := range []string{"1", "latest"} {
		d, err := remote.Head(mustRef(t, host+"/team/app:"+tag, o))
		if err != nil || d.Digest != desc.Digest {
			t.Errorf("app:%s is %v (%v), want %s", tag, d, err, desc.Digest)
		}
	}

	// Pushing again uploads no blob byte: only the manifest goes.
	before := stats.BlobBytesUploaded()
	rec.reset()
	if _, err := New(o).Write(context.Background(), img, refs(t, o, host+"/team/app:2"), WithSources(sources)); err != nil {
		t.Fatal(err)
	}
	if d := stats.BlobBytesUploaded() - before; d != 0 {
		t.Errorf("re-push uploaded %d blob bytes", d)
	}
	if rec.count(progress.Exists, "") != 4 || rec.count(progress.Manifest, "") != 1 {
		t.Errorf("re-push events: %+v", rec.evs)
	}
	if indexOf(sc.events(), "PUT manifest team/app 2", false) < 0 {
		t.Errorf("re-push put no manifest: %v", sc.events())
	}
}

func TestWriteSecondRepositoryMountsFromFirst(t *testing.T) {
	isolateEnv(t)
	host, sc := newScopedRegistry(t, nil)
	img, err := random.Image(8<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	stats := &Stats{}
	o := fastOpts()
	o.Stats = stats
	if _, err := New(o).Write(context.Background(), img, refs(t, o, host+"/one:1", host+"/two:1", host+"/three:1")); err != nil {
		t.Fatal(err)
	}
	// 3 layers and the config uploaded once, mounted into the other two.
	if got := sc.mounts.Load(); got != 8 {
		t.Errorf("%d mounts, want 8: %s", got, sc)
	}
	var total int64
	layers, _ := img.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		total += n
	}
	cfg, _ := img.RawConfigFile()
	if up := stats.BlobBytesUploaded(); up != total+int64(len(cfg)) {
		t.Errorf("uploaded %d bytes, want %d once", up, total+int64(len(cfg)))
	}
}

func TestWriteUnreadableBlobElsewhere(t *testing.T) {
	isolateEnv(t)
	hostA, _ := newScopedRegistry(t, nil)
	hostB, sc := newScopedRegistry(t, nil)
	base := seedImage(t, hostA+"/base:1", nil, 1024, 1)
	hide := map[v1.Hash]bool{layerDigests(t, base)[0]: true}
	o := fastOpts()
	_, err := New(o).Write(context.Background(), &storeLike{Image: base, hide: hide}, refs(t, o, hostB+"/app:1"),
		WithSources(func(v1.Hash) []string { return []string{hostA + "/base"} }))
	if err == nil || !errors.Is(err, ErrBlobUnknown) || !strings.Contains(err.Error(), "not in the local store") ||
		!strings.Contains(err.Error(), hostB+"/app:1") {
		t.Fatalf("error %v", err)
	}
	t.Logf("unreadable blob: %v", err)
	if indexOf(sc.events(), "PUT manifest", false) >= 0 {
		t.Errorf("a manifest was written although a blob failed: %v", sc.events())
	}
}

func TestCopyWithinRegistryMovesNoBytes(t *testing.T) {
	isolateEnv(t)
	host, sc := newScopedRegistry(t, nil)
	src := seedImage(t, host+"/ci/app:build_1.2.3_456", nil, 256<<10, 3)
	rec := &recorder{}
	stats := &Stats{}
	o := fastOpts()
	o.Stats, o.Progress = stats, rec
	desc, err := New(o).Copy(context.Background(), mustRef(t, host+"/ci/app:build_1.2.3_456", o), refs(t, o, host+"/release/app:release-1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != testutil.Digest(t, src) {
		t.Errorf("copied %s, want %s", desc.Digest, testutil.Digest(t, src))
	}
	if stats.BlobBytesUploaded() != 0 || stats.BlobBytesDownloaded() != 0 {
		t.Errorf("copy within a registry moved bytes: %s", stats)
	}
	if sc.mounts.Load() != 4 || rec.count(progress.Mounted, "") != 4 {
		t.Errorf("want 3 layers and the config mounted: %s; events %+v", sc, rec.evs)
	}
	t.Logf("copy within one registry: %s", stats)
}

func TestCopyAcrossRegistriesStreamsAndVerifies(t *testing.T) {
	isolateEnv(t)
	hostA, _ := newScopedRegistry(t, nil)
	hostB, sc := newScopedRegistry(t, nil)
	src := seedImage(t, hostA+"/app:1", nil, 300<<10, 3)
	stats := &Stats{}
	rec := &recorder{}
	o := fastOpts()
	o.Stats, o.Progress = stats, rec
	o.Jobs = 2
	desc, err := New(o).Copy(context.Background(), mustRef(t, hostA+"/app:1", o), refs(t, o, hostB+"/mirror/app:1"))
	if err != nil {
		t.Fatal(err)
	}
	var layerBytes int64
	layers, _ := src.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		layerBytes += n
	}
	cfg, _ := src.RawConfigFile()
	if got, want := stats.BlobBytesUploaded(), layerBytes+int64(len(cfg)); got != want {
		t.Errorf("uploaded %d, want %d", got, want)
	}
	if got := stats.LayerBytesDownloaded(); got != layerBytes {
		t.Errorf("downloaded %d layer bytes, want %d", got, layerBytes)
	}
	if sc.mounts.Load() != 0 || rec.count(progress.Done, progress.KindLayer) != 3 {
		t.Errorf("%s, events %+v", sc, rec.evs)
	}
	got, _, err := New(o).Image(context.Background(), mustRef(t, hostB+"/mirror/app:1", o), nil)
	if err != nil {
		t.Fatal(err)
	}
	if testutil.Digest(t, got) != desc.Digest || desc.Digest != testutil.Digest(t, src) {
		t.Errorf("digest changed in the copy")
	}
	testutil.CheckLayers(t, got)
}

func TestCopyCorruptBlobIsRefused(t *testing.T) {
	isolateEnv(t)
	var corrupt v1.Hash
	var mu sync.Mutex
	flip := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			bad := corrupt.Hex != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+corrupt.String())
			mu.Unlock()
			if !bad {
				next.ServeHTTP(w, r)
				return
			}
			rec := &bodyCapture{header: http.Header{}}
			next.ServeHTTP(rec, r)
			b := rec.body
			if len(b) > 0 {
				b[len(b)/2] ^= 0xff
			}
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(b)
		})
	}
	hostA, _ := newScopedRegistry(t, flip)
	hostB, sc := newScopedRegistry(t, nil)
	src := seedImage(t, hostA+"/app:1", nil, 4096, 2)
	mu.Lock()
	corrupt = layerDigests(t, src)[1]
	mu.Unlock()
	o := fastOpts()
	_, err := New(o).Copy(context.Background(), mustRef(t, hostA+"/app:1", o), refs(t, o, hostB+"/app:1"))
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), corrupt.String()) {
		t.Fatalf("copy of a corrupt blob: %v", err)
	}
	t.Logf("corrupt blob: %v", err)
	if sc.has("app", corrupt.String()) {
		t.Error("the corrupt blob was accepted")
	}
	if indexOf(sc.events(), "PUT manifest", false) >= 0 {
		t.Error("a manifest was written")
	}
}

// bodyCapture records a handler's answer.
type bodyCapture struct {
	header http.Header
	status int
	body   []byte
}

func (b *bodyCapture) Header() http.Header { return b.header }
func (b *bodyCapture) WriteHeader(s int)   { b.status = s }
func (b *bodyCapture) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.body = append(b.body, p...)
	return len(p), nil
}

func TestCopyIndex(t *testing.T) {
	isolateEnv(t)
	hostA, scA := newScopedRegistry(t, nil)
	hostB, _ := newScopedRegistry(t, nil)
	idx, err := random.Index(2048, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(mustRef(t, hostA+"/src/multi:1", Options{}), idx); err != nil {
		t.Fatal(err)
	}
	want := testutil.Digest(t, idx)
	im, _ := idx.IndexManifest()

	// Same registry: no bytes.
	stats := &Stats{}
	o := fastOpts()
	o.Stats = stats
	desc, err := New(o).Copy(context.Background(), mustRef(t, hostA+"/src/multi:1", o), refs(t, o, hostA+"/dst/multi:1"))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want || desc.MediaType != types.OCIImageIndex {
		t.Errorf("copied %+v, want index %s", desc, want)
	}
	if stats.BlobBytesUploaded() != 0 || stats.LayerBytesDownloaded() != 0 || scA.mounts.Load() != 9 {
		t.Errorf("index copy within a registry: %s; %s", stats, scA)
	}
	// Across registries: every image there, verified.
	stats2 := &Stats{}
	o.Stats = stats2
	if _, err := New(o).Copy(context.Background(), mustRef(t, hostA+"/src/multi:1", o), refs(t, o, hostB+"/multi:1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range im.Manifests {
		img, _, err := New(o).Image(context.Background(), mustRef(t, hostB+"/multi@"+c.Digest.String(), o), nil)
		if err != nil {
			t.Fatal(err)
		}
		testutil.CheckLayers(t, img)
	}
	got, err := remote.Index(mustRef(t, hostB+"/multi:1", o))
	if err != nil || testutil.Digest(t, got) != want {
		t.Fatalf("index at B: %v", err)
	}
	// Again: the child manifests exist, so their blobs are not even asked for.
	rec := &recorder{}
	o.Progress = rec
	stats3 := &Stats{}
	o.Stats = stats3
	if _, err := New(o).Copy(context.Background(), mustRef(t, hostA+"/src/multi:1", o), refs(t, o, hostB+"/multi:2")); err != nil {
		t.Fatal(err)
	}
	if rec.count(progress.Exists, progress.KindManifest) != 3 || stats3.BlobBytesUploaded() != 0 || stats3.LayerBlobsDownloaded() != 0 {
		t.Errorf("second index copy: %s, events %+v", stats3, rec.evs)
	}
}

func TestCopyAllTags(t *testing.T) {
	isolateEnv(t)
	host, _ := newScopedRegistry(t, nil)
	want := map[string]v1.Hash{}
	for _, tag := range []string{"1.0", "1.1", "latest"} {
		want[tag] = testutil.Digest(t, seedImage(t, host+"/src/app:"+tag, nil, 1024, 1))
	}
	o := fastOpts()
	var seen []string
	err := New(o).CopyAllTags(context.Background(), mustRef(t, host+"/src/app", o).Context(), mustRef(t, host+"/dst/app", o).Context(), nil, func(tc TagCopy) {
		if tc.Err != nil {
			t.Errorf("%s: %v", tc.Src, tc.Err)
		}
		if tc.Descriptor.Digest != want[tc.Dst.TagStr()] {
			t.Errorf("%s -> %s: %s", tc.Src, tc.Dst, tc.Descriptor.Digest)
		}
		seen = append(seen, tc.Dst.TagStr())
	})
	if err != nil {
		t.Fatal(err)
	}
	tags, err := New(o).ListTags(context.Background(), mustRef(t, host+"/dst/app", o).Context())
	if err != nil || strings.Join(tags, ",") != "1.0,1.1,latest" || strings.Join(seen, ",") != "1.0,1.1,latest" {
		t.Errorf("dst tags %v (%v), reported %v", tags, err, seen)
	}
	err = New(o).CopyAllTags(context.Background(), mustRef(t, host+"/empty/none", o).Context(), mustRef(t, host+"/x/y", o).Context(), nil, nil)
	if err == nil {
		t.Error("copying the tags of a repository without tags succeeded")
	}
}

// TestWriteTokenRefusingMountScope: a token service that refuses a token
// asking for pull access to the mount source still gets the push, by
// upload.
func TestWriteTokenRefusingMountScope(t *testing.T) {
	isolateEnv(t)
	ba := newBearerAuth("u", "p")
	var refused atomic.Int64
	refusing := func(next http.Handler) http.Handler {
		inner := ba.wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				for _, sc := range r.URL.Query()["scope"] {
					if strings.Contains(sc, "secret/base") {
						refused.Add(1)
						w.WriteHeader(http.StatusForbidden)
						io.WriteString(w, `{"errors":[{"code":"DENIED","message":"no access to secret/base"}]}`)
						return
					}
				}
			}
			inner.ServeHTTP(w, r)
		})
	}
	host, sc := newScopedRegistry(t, refusing)
	o := fastOpts()
	o.Credentials = []Credential{{Registry: host, Username: "u", Password: "p"}}
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	o.Progress = rec
	_, err = New(o).Write(context.Background(), img, refs(t, o, host+"/team/app:1"),
		WithSources(func(v1.Hash) []string { return []string{host + "/secret/base"} }))
	if err != nil {
		t.Fatal(err)
	}
	if refused.Load() == 0 || sc.mounts.Load() != 0 || rec.count(progress.Done, progress.KindLayer) != 2 {
		t.Errorf("want a refused token, then plain uploads: %d refused, %s; %+v", refused.Load(), sc, rec.evs)
	}
}
