package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// faultRate is the share of registry requests the fault proxy spoils in
// the fault tests, and faultStreak how many requests with one method and
// path it spoils in a row at most.
const (
	faultRate   = 0.2
	faultStreak = 2
)

// faultSeeds are the seeds of the fault proxies: each gives other faults
// on other requests (the same ones on every run).
var faultSeeds = []int64{1, 2, 3}

// faultImage is a multi-layer image in a kiln store and where it came
// from.
type faultImage struct {
	s      *testutil.RegistrySetup // the registry of its base
	u      *kilnUser               // whose store holds it
	ref    string                  // its name in that store
	digest string                  // its manifest digest
}

// TestRegistryFaults pushes, copies (within a registry and between two)
// and pulls a six-layer image through proxies that spoil 20% of the
// requests (dropped connections before and in the middle of bodies, lost
// answers, 500s, 429s with Retry-After), with three seeds; cuts the first
// manifest answer of a pull, a copy and a build; kills a push stalled in
// the middle of an upload and runs it again; and serves corrupted blobs.
// Every result is verified blob by blob straight from the registry.
func TestRegistryFaults(t *testing.T) {
	testutil.SkipIfShort(t)
	s := testutil.StartPlainRegistry(t)
	s.Push(t, "library/busybox:1", testutil.BusyboxImage(t))
	ctxDir := layeredContext(t, s.Ref("library/busybox:1"), 1, 3<<20, 1<<20, 2<<20+12345, 300<<10, 1500<<10)
	fi := faultImage{s: s, u: newKilnUser(t), ref: s.Ref("src/app:1")}
	df := filepath.Join(t.TempDir(), "digest")
	// Same digests on every run (file times and --timestamp fixed): the
	// faults a seed picks for each blob's requests are the same too.
	fi.u.ok(t, "build", "--timestamp", "1700000000", "--digestfile", df, "-t", fi.ref, ctxDir)
	b, err := os.ReadFile(df)
	if err != nil {
		t.Fatal(err)
	}
	fi.digest = strings.TrimSpace(string(b))

	fi.u.ok(t, "push", fi.ref, s.Ref("faulty/src:1"))
	s2 := testutil.StartPlainRegistry(t)
	for _, seed := range faultSeeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Run("push", func(t *testing.T) { faultyPush(t, fi, seed) })
			t.Run("copy", func(t *testing.T) { faultyCopy(t, fi, s2, seed) })
			t.Run("pull", func(t *testing.T) { faultyPull(t, fi, seed) })
		})
	}
	t.Run("cut manifest", func(t *testing.T) { cutManifest(t, fi) })
	t.Run("killed push", func(t *testing.T) { killedPush(t, fi) })
	t.Run("corrupt blob", func(t *testing.T) { corruptBlob(t, fi) })
}

// faultOptions are the options of a 20% fault proxy with seed.
func faultOptions(seed int64) harness.FaultOptions {
	return harness.FaultOptions{Seed: seed, Rate: faultRate, MaxConsecutive: faultStreak}
}

// faultSummary counts the exchanges of a proxy per fault kind, e.g.
// "212 requests: none 170, drop 11, 500 9, ...".
func faultSummary(ex []harness.Exchange) string {
	m := map[harness.FaultKind]int{}
	for _, e := range ex {
		m[e.Fault]++
	}
	var parts []string
	for k := harness.FaultNone; k <= harness.FaultStallMidBody; k++ {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	return fmt.Sprintf("%d requests: %s", len(ex), strings.Join(parts, ", "))
}

// spoiled counts the exchanges that got a fault.
func spoiled(ex []harness.Exchange) int {
	n := 0
	for _, e := range ex {
		if e.Fault != harness.FaultNone {
			n++
		}
	}
	return n
}

// manifestAfterBlobs fails the test unless every manifest PUT to repo
// started after the registry was known to hold every blob of the manifest
// (uploaded, mounted or found by HEAD) through that proxy.
func manifestAfterBlobs(t *testing.T, ex []harness.Exchange, repo string, blobs []testutil.VerifiedBlob) {
	t.Helper()
	present := harness.BlobsKnownPresent(ex, repo)
	last := 0
	for _, b := range blobs {
		tick, ok := present[b.Digest.String()]
		if !ok {
			t.Errorf("blob %s of %s never went through the proxy (upload, mount or HEAD 200)", b.Digest, repo)
			continue
		}
		last = max(last, tick)
	}
	puts := 0
	for _, e := range ex {
		if e.Method == http.MethodPut && strings.HasPrefix(e.Path, "/v2/"+repo+"/manifests/") {
			puts++
			if e.Seq < last {
				t.Errorf("manifest PUT %s started (tick %d) before the last blob was in place (tick %d)", e, e.Seq, last)
			}
		}
	}
	if puts == 0 {
		t.Errorf("no manifest PUT to %s went through the proxy", repo)
	}
}

// faultyPush: kiln push through a 20% fault proxy.
func faultyPush(t *testing.T, fi faultImage, seed int64) {
	fp := fi.s.FaultProxy(t, faultOptions(seed))
	repo := fmt.Sprintf("faulty/push-%d", seed)
	dst := fp.Addr + "/" + repo + ":1"
	// One blob at a time: the proxy's cap on faults in a row is per
	// method and path, and every blob's PATCH has the same path (upload
	// IDs aside), so concurrent uploads would share one streak and a blob
	// could meet more faults in a row than kiln's retries by the order of
	// requests alone.
	r := fi.u.run(t, "", "--jobs", "1", "push", fi.ref, dst)
	ex := fp.Exchanges()
	t.Logf("push through the fault proxy: %s; %d upload bytes for %d blobs", faultSummary(ex), harness.UploadBytes(ex), len(harness.Uploads(ex)))
	if r.err != nil {
		t.Fatalf("push at a %.0f%% fault rate failed: %v\n%s\nexchanges:\n%s", faultRate*100, r.err, r, exchangeLog(ex))
	}
	if spoiled(ex) == 0 {
		t.Fatalf("the proxy injected no fault: the test proves nothing")
	}
	if d := pushedDigest(t, r, dst); d != fi.digest {
		t.Errorf("push printed %s, the built image is %s", d, fi.digest)
	}
	d, blobs := fi.s.VerifyBlobs(t, repo+":1")
	if d.String() != fi.digest || len(blobs) != 7 {
		t.Errorf("%s:1 is %s with %d blobs, want %s with 7", repo, d, len(blobs), fi.digest)
	}
	manifestAfterBlobs(t, ex, repo, blobs)
}

// faultyCopy: kiln copy within one registry, and to another registry
// (s2), through 20% fault proxies.
func faultyCopy(t *testing.T, fi faultImage, s2 *testutil.RegistrySetup, seed int64) {
	repo := fmt.Sprintf("faulty/copy-%d", seed)
	t.Run("same registry", func(t *testing.T) {
		fp := fi.s.FaultProxy(t, faultOptions(seed))
		r := fi.u.run(t, "", "--jobs", "1", "copy", fp.Addr+"/faulty/src:1", fp.Addr+"/"+repo+":1")
		ex := fp.Exchanges()
		t.Logf("copy through the fault proxy: %s", faultSummary(ex))
		if r.err != nil {
			t.Fatalf("copy at a %.0f%% fault rate failed: %v\n%s\nexchanges:\n%s", faultRate*100, r.err, r, exchangeLog(ex))
		}
		if spoiled(ex) == 0 {
			t.Fatalf("the proxy injected no fault: the test proves nothing")
		}
		d, blobs := fi.s.VerifyBlobs(t, repo+":1")
		if d.String() != fi.digest {
			t.Errorf("%s:1 is %s, want %s", repo, d, fi.digest)
		}
		manifestAfterBlobs(t, ex, repo, blobs)
	})
	t.Run("two registries", func(t *testing.T) {
		src := fi.s.FaultProxy(t, faultOptions(seed+100))
		dst := s2.FaultProxy(t, faultOptions(seed+200))
		r := fi.u.run(t, "", "--jobs", "1", "copy", src.Addr+"/faulty/src:1", dst.Addr+"/"+repo+":1")
		sx, dx := src.Exchanges(), dst.Exchanges()
		t.Logf("copy: source side %s; destination side %s; %d upload bytes", faultSummary(sx), faultSummary(dx), harness.UploadBytes(dx))
		if r.err != nil {
			t.Fatalf("copy between registries at a %.0f%% fault rate failed: %v\n%s\nsource exchanges:\n%s\ndestination exchanges:\n%s",
				faultRate*100, r.err, r, exchangeLog(sx), exchangeLog(dx))
		}
		if spoiled(sx)+spoiled(dx) == 0 {
			t.Fatalf("the proxies injected no fault: the test proves nothing")
		}
		d, blobs := s2.VerifyBlobs(t, repo+":1")
		if d.String() != fi.digest || len(blobs) != 7 {
			t.Errorf("%s:1 in the second registry is %s with %d blobs, want %s with 7", repo, d, len(blobs), fi.digest)
		}
		manifestAfterBlobs(t, dx, repo, blobs)
	})
}

// faultyPull: kiln pull through a 20% fault proxy into an empty store;
// the stored image must be whole and valid. A pull is a dozen requests,
// so that faults are certain the first GET of every blob fails too (drop,
// cut body, 500, 429 in turn).
func faultyPull(t *testing.T, fi faultImage, seed int64) {
	o := faultOptions(seed + 300)
	var mu sync.Mutex
	seen := map[string]bool{}
	o.Rule = func(r *http.Request) harness.FaultKind {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			return harness.FaultNone
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[r.URL.Path] {
			return harness.FaultNone
		}
		seen[r.URL.Path] = true
		return harness.DefaultFaultKinds[(len(seen)-1)%len(harness.DefaultFaultKinds)]
	}
	fp := fi.s.FaultProxy(t, o)
	v := newKilnUser(t)
	r := v.run(t, "", "pull", fp.Addr+"/faulty/src:1")
	ex := fp.Exchanges()
	t.Logf("pull through the fault proxy: %s", faultSummary(ex))
	if r.err != nil {
		t.Fatalf("pull at a %.0f%% fault rate failed: %v\n%s\nexchanges:\n%s", faultRate*100, r.err, r, exchangeLog(ex))
	}
	if spoiled(ex) == 0 {
		t.Fatalf("the proxy injected no fault: the test proves nothing")
	}
	checkPulled(t, v, fi.digest)
}

// checkPulled fails the test unless v's store holds the image with
// manifest digest d, whole and valid, and only blobs that match their names.
func checkPulled(t *testing.T, v *kilnUser, d string) {
	t.Helper()
	if err := validate.Image(storeImage(t, v.root, d)); err != nil {
		t.Errorf("the pulled image in the store is not valid: %v", err)
	}
	checkStoreBlobs(t, v.root)
}

// cutManifest: the first answer to a manifest GET is cut in the middle of
// its body (as a reset connection does). pull, copy and a build on that
// base must retry it like any other transient fault.
func cutManifest(t *testing.T, fi faultImage) {
	// once cuts the first manifest GET of a repository's tag "1".
	once := func() harness.FaultOptions {
		var mu sync.Mutex
		cut := false
		return harness.FaultOptions{Rule: func(r *http.Request) harness.FaultKind {
			mu.Lock()
			defer mu.Unlock()
			if !cut && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/1") {
				cut = true
				return harness.FaultDropMidBody
			}
			return harness.FaultNone
		}}
	}
	t.Run("pull", func(t *testing.T) {
		fp := fi.s.FaultProxy(t, once())
		v := newKilnUser(t)
		r := v.run(t, "", "pull", fp.Addr+"/faulty/src:1")
		if r.err != nil {
			t.Fatalf("pull with one cut manifest answer failed: %v\n%s\nexchanges:\n%s", r.err, r, exchangeLog(fp.Exchanges()))
		}
		checkPulled(t, v, fi.digest)
	})
	t.Run("copy", func(t *testing.T) {
		fp := fi.s.FaultProxy(t, once())
		r := fi.u.run(t, "", "copy", fp.Addr+"/faulty/src:1", fp.Addr+"/faulty/cutcopy:1")
		if r.err != nil {
			t.Fatalf("copy with one cut manifest answer failed: %v\n%s\nexchanges:\n%s", r.err, r, exchangeLog(fp.Exchanges()))
		}
		if d, _ := fi.s.VerifyBlobs(t, "faulty/cutcopy:1"); d.String() != fi.digest {
			t.Errorf("faulty/cutcopy:1 is %s, want %s", d, fi.digest)
		}
	})
	t.Run("build", func(t *testing.T) {
		fp := fi.s.FaultProxy(t, once())
		v := newKilnUser(t)
		ctx := t.TempDir()
		writeFile(t, filepath.Join(ctx, "Dockerfile"), "FROM "+fp.Addr+"/faulty/src:1\nCOPY x /x\n")
		writeFile(t, filepath.Join(ctx, "x"), "x\n")
		r := v.run(t, "", "build", "-t", "cut:1", ctx)
		if r.err != nil {
			t.Fatalf("build on a base whose first manifest answer was cut failed: %v\n%s\nexchanges:\n%s", r.err, r, exchangeLog(fp.Exchanges()))
		}
	})
}

// storeImage reads the image with manifest digest d from a kiln store
// (an OCI image layout) with go-containerregistry.
func storeImage(t *testing.T, root, d string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(root)
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(d)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(h)
	if err != nil {
		t.Fatalf("store %s has no image %s: %v", root, d, err)
	}
	return img
}

// checkStoreBlobs fails the test if a blob file in a kiln store does not
// hash to its name, and returns the digests it holds.
func checkStoreBlobs(t *testing.T, root string) []string {
	t.Helper()
	dir := filepath.Join(root, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Name() {
			t.Errorf("store blob %s holds content with sha256 %s", e.Name(), got)
		}
		out = append(out, "sha256:"+e.Name())
	}
	return out
}

// killedPush: a push whose uploads stall in the middle of a body is killed
// (SIGKILL) once two blobs are committed; the rerun completes and uploads
// only the blobs the registry lacks.
func killedPush(t *testing.T, fi faultImage) {
	s3 := testutil.StartPlainRegistry(t)
	var fp *harness.FaultProxy
	fp = s3.FaultProxy(t, harness.FaultOptions{Rule: func(r *http.Request) harness.FaultKind {
		if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/blobs/uploads/") &&
			len(harness.Uploads(fp.Exchanges())) >= 2 {
			return harness.FaultStallMidBody
		}
		return harness.FaultNone
	}})
	ctx, cancel := context.WithTimeout(context.Background(), kilnTimeout)
	defer cancel()
	cmd := fi.u.command(ctx, t, nil, "push", fi.ref, fp.Addr+"/killed/app:1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-fp.Stalled():
	case err := <-exited:
		t.Fatalf("the push ended (%v) before an upload stalled; exchanges:\n%s\noutput:\n%s", err, exchangeLog(fp.Exchanges()), out.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	// Release the held upload and wait until nothing more can reach the
	// registry; then ask the registry itself which blobs it has.
	if err := fp.Close(); err != nil {
		t.Fatal(err)
	}
	firstBytes := harness.UploadBytes(fp.Exchanges())
	m, err := storeImage(t, fi.u.root, fi.digest).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	all := append([]v1.Descriptor{m.Config}, m.Layers...)
	done := map[string]bool{}
	for _, b := range all {
		if s3.HasBlob(t, "killed/app", b.Digest) {
			done[b.Digest.String()] = true
		}
	}
	for _, u := range harness.Uploads(fp.Exchanges()) {
		if !done[u.Digest] {
			t.Errorf("blob %s was committed through the proxy but the registry does not have it", u.Digest)
		}
	}
	if len(done) < 2 || len(done) == len(all) {
		t.Fatalf("the registry holds %d of %d blobs after the kill: want some but not all", len(done), len(all))
	}
	// Nothing partial is visible: no manifest yet.
	resp, err := s3.HTTPClient().Head("http://" + s3.Addr + "/v2/killed/app/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("after the kill, HEAD killed/app:1 answers %d, want 404 (no manifest before every blob)", resp.StatusCode)
	}

	rec := testutil.RecordingProxy(t, s3.Addr)
	r := fi.u.ok(t, "push", fi.ref, rec.Addr+"/killed/app:1")
	if d := pushedDigest(t, r, rec.Addr+"/killed/app:1"); d != fi.digest {
		t.Errorf("the rerun printed %s, want %s", d, fi.digest)
	}
	d, blobs := s3.VerifyBlobs(t, "killed/app:1")
	if d.String() != fi.digest {
		t.Errorf("killed/app:1 is %s after the rerun, want %s", d, fi.digest)
	}
	var missing []string
	for _, b := range blobs {
		if !done[b.Digest.String()] {
			missing = append(missing, b.Digest.String())
		}
	}
	slices.Sort(missing)
	rx := rec.Exchanges()
	if got := uploadedDigests(rx); !slices.Equal(got, missing) {
		t.Errorf("the rerun uploaded %v, want exactly the blobs the killed push had not committed %v", got, missing)
	}
	t.Logf("killed push: %d blobs committed, %d upload bytes sent before the kill; rerun uploaded %d blobs, %d bytes",
		len(done), firstBytes, len(harness.Uploads(rx)), harness.UploadBytes(rx))
}

// corruptBlob: a proxy rewrites one byte of a layer on every GET. A pull,
// a copy to another registry and a build pushed to another registry fail
// naming the blob, and nothing corrupt is stored anywhere.
func corruptBlob(t *testing.T, fi faultImage) {
	fi.u.ok(t, "push", fi.ref, fi.s.Ref("corrupt/src:1"))
	_, blobs := fi.s.VerifyBlobs(t, "corrupt/src:1")
	bad := blobs[len(blobs)-2].Digest // a layer of this build
	baseBad := blobs[1].Digest        // the base layer
	fp := fi.s.FaultProxy(t, harness.FaultOptions{CorruptBlob: func(d string) bool {
		return d == bad.String() || d == baseBad.String()
	}})
	// named fails the test unless stderr names a corrupted blob (by its
	// digest or its short form) and says what is wrong with it.
	named := func(t *testing.T, r run) {
		t.Helper()
		for _, d := range []v1.Hash{bad, baseBad} {
			if strings.Contains(r.stderr, d.Hex[:12]) {
				if !hasWord(r.stderr, "checksum") && !hasWord(r.stderr, "digest mismatch") {
					t.Errorf("the error names blob %s but not a digest mismatch\n%s", d, r)
				}
				return
			}
		}
		t.Errorf("the error names neither corrupted blob (%s, %s)\n%s", bad, baseBad, r)
	}

	t.Run("pull", func(t *testing.T) {
		v := newKilnUser(t)
		r := v.fails(t, "pull", fp.Addr+"/corrupt/src:1")
		named(t, r)
		held := checkStoreBlobs(t, v.root)
		if slices.Contains(held, bad.String()) || slices.Contains(held, baseBad.String()) {
			t.Errorf("the store holds a blob that was served corrupted")
		}
		if out := v.ok(t, "images").stdout; strings.Contains(out, "corrupt/src") {
			t.Errorf("kiln images lists the image whose pull failed:\n%s", out)
		}
	})
	t.Run("copy", func(t *testing.T) {
		s4 := testutil.StartPlainRegistry(t)
		r := fi.u.fails(t, "copy", fp.Addr+"/corrupt/src:1", s4.Ref("corrupt/dst:1"))
		named(t, r)
		for _, d := range []v1.Hash{bad, baseBad} {
			if s4.HasBlob(t, "corrupt/dst", d) {
				t.Errorf("the destination registry accepted the corrupted blob %s", d)
			}
		}
		noManifest(t, s4, "corrupt/dst", "1")
	})
	t.Run("build --push", func(t *testing.T) {
		// The base layer comes from the corrupting proxy and must be
		// streamed to another registry.
		s4 := testutil.StartPlainRegistry(t)
		v := newKilnUser(t)
		ctx := t.TempDir()
		writeFile(t, filepath.Join(ctx, "Dockerfile"), "FROM "+fp.Addr+"/corrupt/src:1\nCOPY x /x\n")
		randomFile(t, filepath.Join(ctx, "x"), 99, 1000)
		r := v.fails(t, "build", "--push", "-t", s4.Ref("corrupt/built:1"), ctx)
		named(t, r)
		if s4.HasBlob(t, "corrupt/built", baseBad) {
			t.Errorf("the destination registry accepted the corrupted base layer")
		}
		noManifest(t, s4, "corrupt/built", "1")
		held := checkStoreBlobs(t, v.root)
		if slices.Contains(held, baseBad.String()) {
			t.Errorf("the store holds the base layer that was served corrupted")
		}
	})
}

// noManifest fails the test unless the registry answers 404 for
// repo:ref's manifest.
func noManifest(t *testing.T, s *testutil.RegistrySetup, repo, ref string) {
	t.Helper()
	resp, err := s.HTTPClient().Head(s.Scheme + "://" + s.Addr + "/v2/" + repo + "/manifests/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD %s:%s answers %d, want 404", repo, ref, resp.StatusCode)
	}
}

// exchangeLog formats exchanges one a line, for failure messages.
func exchangeLog(ex []harness.Exchange) string {
	var b strings.Builder
	for _, e := range ex {
		fmt.Fprintf(&b, "  %s (req %d, resp %d bytes)\n", e, e.ReqBytes, e.RespBytes)
	}
	return b.String()
}

// randomFile writes size pseudo-random (incompressible, seeded) bytes to
// path.
func randomFile(t *testing.T, path string, seed int64, size int) {
	t.Helper()
	b := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixedTime is the modification time of the files layeredContext writes.
var fixedTime = time.Unix(1700000000, 0)

// layeredContext makes a build context in a new directory whose
// Dockerfile puts one COPY layer per size on top of base (incompressible
// files; seed makes the content differ between contexts).
func layeredContext(t *testing.T, base string, seed int64, sizes ...int) string {
	t.Helper()
	dir := t.TempDir()
	var df strings.Builder
	df.WriteString("FROM " + base + "\n")
	for i, n := range sizes {
		name := fmt.Sprintf("f%d", i)
		randomFile(t, filepath.Join(dir, name), seed*100+int64(i), n)
		if err := os.Chtimes(filepath.Join(dir, name), fixedTime, fixedTime); err != nil {
			t.Fatal(err)
		}
		df.WriteString("COPY " + name + " /data/" + name + "\n")
	}
	df.WriteString("CMD [\"ls\", \"/data\"]\n")
	writeFile(t, filepath.Join(dir, "Dockerfile"), df.String())
	return dir
}
