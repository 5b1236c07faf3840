package testutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// faultSequence sends n sequential GET /v2/ requests through a fresh
// proxy with o and returns the faults the proxy chose, in order.
func faultSequence(t *testing.T, o harness.FaultOptions, n int) []harness.FaultKind {
	t.Helper()
	o.Kinds = []harness.FaultKind{harness.Fault500, harness.Fault429}
	p := FaultProxy(t, StartInProcessRegistry(t), o)
	for i := 0; i < n; i++ {
		resp, err := http.Get("http://" + p.Addr + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var out []harness.FaultKind
	for _, e := range p.Exchanges() {
		out = append(out, e.Fault)
	}
	return out
}

func TestFaultProxyDeterministic(t *testing.T) {
	const n = 400
	a := faultSequence(t, harness.FaultOptions{Seed: 7, Rate: 0.2}, n)
	b := faultSequence(t, harness.FaultOptions{Seed: 7, Rate: 0.2}, n)
	c := faultSequence(t, harness.FaultOptions{Seed: 8, Rate: 0.2}, n)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 gave different faults in two runs")
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same faults")
	}
	faults, kinds := 0, map[harness.FaultKind]int{}
	for _, k := range a {
		if k != harness.FaultNone {
			faults++
			kinds[k]++
		}
	}
	if faults < n*15/100 || faults > n*25/100 {
		t.Errorf("%d faults in %d requests at rate 0.2", faults, n)
	}
	if kinds[harness.Fault500] == 0 || kinds[harness.Fault429] == 0 {
		t.Errorf("fault kinds %v: want both 500 and 429", kinds)
	}
	// A cap of one fault in a row: a fault is always followed by a pass.
	capped := faultSequence(t, harness.FaultOptions{Seed: 7, Rate: 0.6, MaxConsecutive: 1}, n)
	for i := 1; i < len(capped); i++ {
		if capped[i] != harness.FaultNone && capped[i-1] != harness.FaultNone {
			t.Fatalf("requests %d and %d both failed with MaxConsecutive 1", i-1, i)
		}
	}
	if zero := faultSequence(t, harness.FaultOptions{Seed: 7}, 50); slices.ContainsFunc(zero, func(k harness.FaultKind) bool { return k != harness.FaultNone }) {
		t.Errorf("rate 0 injected faults: %v", zero)
	}
}

// always returns a Rule that applies k to every request matching method
// and a path substring.
func always(k harness.FaultKind, method, pathPart string) func(*http.Request) harness.FaultKind {
	return func(r *http.Request) harness.FaultKind {
		if r.Method == method && strings.Contains(r.URL.Path, pathPart) {
			return k
		}
		return harness.FaultNone
	}
}

// pushedBlob puts a random blob in an in-process registry and returns the
// registry, the blob's URL path and its content.
func pushedBlob(t *testing.T) (addr, path string, content []byte) {
	t.Helper()
	addr = StartInProcessRegistry(t)
	img, err := random.Image(300_000, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(addr + "/x/y:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	l, _ := img.Layers()
	d, _ := l[0].Digest()
	rc, _ := l[0].Compressed()
	content, _ = io.ReadAll(rc)
	return addr, "/v2/x/y/blobs/" + d.String(), content
}

func TestFaultProxyKinds(t *testing.T) {
	addr, blob, content := pushedBlob(t)

	t.Run("drop", func(t *testing.T) {
		p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(harness.FaultDrop, "GET", "/blobs/")})
		if resp, err := http.Get("http://" + p.Addr + blob); err == nil {
			resp.Body.Close()
			t.Fatalf("GET through a dropping proxy: %s, want a connection error", resp.Status)
		}
		if f := p.Faults(); f[harness.FaultDrop] != 1 {
			t.Errorf("faults %v, want one drop", f)
		}
	})
	t.Run("status", func(t *testing.T) {
		for _, c := range []struct {
			k    harness.FaultKind
			code int
		}{{harness.Fault500, 500}, {harness.Fault429, 429}} {
			p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(c.k, "GET", "/blobs/")})
			resp, err := http.Get("http://" + p.Addr + blob)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.code {
				t.Errorf("%s: status %d", c.k, resp.StatusCode)
			}
			if c.code == 429 && resp.Header.Get("Retry-After") != "1" {
				t.Errorf("429 without Retry-After: 1: %q", resp.Header.Get("Retry-After"))
			}
		}
	})
	t.Run("drop-mid-response", func(t *testing.T) {
		p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(harness.FaultDropMidBody, "GET", "/blobs/")})
		resp, err := http.Get("http://" + p.Addr + blob)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || len(got) != len(content)/2 || !bytes.Equal(got, content[:len(got)]) {
			t.Errorf("read %d of %d bytes (err %v), want the first half and an error", len(got), len(content), err)
		}
	})
	t.Run("drop-mid-upload", func(t *testing.T) {
		p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(harness.FaultDropMidBody, "PUT", "/blobs/uploads/")})
		loc := startUpload(t, p.Addr)
		body := bytes.Repeat([]byte("u"), 100_000)
		req, _ := http.NewRequest(http.MethodPut, loc+"&digest="+fmt.Sprintf("sha256:%x", sha256.Sum256(body)), bytes.NewReader(body))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("upload through a mid-body drop: %s, want a connection error", resp.Status)
		}
		ex := p.Exchanges()
		last := ex[len(ex)-1]
		if last.Method != "PUT" || last.ReqBytes != 50_000 || last.Status != 0 {
			t.Errorf("last exchange %s with %d request bytes, want a PUT cut at 50000 bytes, unanswered", last, last.ReqBytes)
		}
	})
	t.Run("lost-answer", func(t *testing.T) {
		// A request without a body reaches the registry; its answer is lost.
		p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(harness.FaultDropMidBody, "POST", "/blobs/uploads/")})
		if resp, err := http.Post("http://"+p.Addr+"/v2/x/y/blobs/uploads/", "", nil); err == nil {
			resp.Body.Close()
			t.Fatalf("POST: %s, want a connection error", resp.Status)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		p := FaultProxy(t, addr, harness.FaultOptions{CorruptBlob: func(string) bool { return true }})
		resp, err := http.Get("http://" + p.Addr + blob)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(got) != len(content) {
			t.Fatalf("corrupted GET: %d, %d bytes, %v; want 200 and %d bytes", resp.StatusCode, len(got), err, len(content))
		}
		diff := 0
		for i := range got {
			if got[i] != content[i] {
				diff++
			}
		}
		if diff != 1 {
			t.Errorf("%d bytes differ, want 1", diff)
		}
		if ex := p.Exchanges(); !ex[0].Corrupted {
			t.Errorf("exchange %s not marked corrupted", ex[0])
		}
	})
	t.Run("stall", func(t *testing.T) {
		p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(harness.FaultStall, "GET", "/blobs/")})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+blob, nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		<-p.Stalled()
		cancel()
		if err := <-errc; err == nil {
			t.Errorf("a stalled GET returned a response")
		}
	})
	t.Run("stall-mid-upload", func(t *testing.T) {
		p := FaultProxy(t, addr, harness.FaultOptions{Rule: always(harness.FaultStallMidBody, "PUT", "/blobs/uploads/")})
		loc := startUpload(t, p.Addr)
		body := bytes.Repeat([]byte("s"), 100_000)
		errc := make(chan error, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPut, loc+"&digest="+fmt.Sprintf("sha256:%x", sha256.Sum256(body)), bytes.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		<-p.Stalled()
		_ = p.Close() // releases the held request
		if err := <-errc; err == nil {
			t.Errorf("a stalled upload returned a response")
		}
	})
}

// startUpload starts a blob upload through the proxy at addr and returns
// its location as an absolute URL with a query.
func startUpload(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v2/x/y/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + addr + loc
	}
	if !strings.Contains(loc, "?") {
		loc += "?"
	}
	return loc
}

// TestRecordingProxy pushes an image through a recording proxy in front of
// docker-registry, then copies it to another repository with a mount, and
// checks what the proxy recorded.
func TestRecordingProxy(t *testing.T) {
	SkipIfShort(t)
	reg := StartRegistry(t)
	p := RecordingProxy(t, reg)
	img, err := random.Image(200_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(p.Addr + "/a/img:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	ex := p.Exchanges()
	var want []string
	var wantBytes int64
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		n, _ := l.Size()
		want = append(want, d.String())
		wantBytes += n
	}
	cfg, _ := img.ConfigName()
	rawCfg, _ := img.RawConfigFile()
	want = append(want, cfg.String())
	wantBytes += int64(len(rawCfg))
	var got []string
	for _, u := range harness.Uploads(ex) {
		if u.Repo != "a/img" {
			t.Errorf("upload to %s", u.Repo)
		}
		got = append(got, u.Digest)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("uploads %v, want %v", got, want)
	}
	if n := harness.UploadBytes(ex); n != wantBytes {
		t.Errorf("upload bytes %d, want %d", n, wantBytes)
	}
	if mp := harness.ManifestPuts(ex); !slices.Equal(mp, []string{"a/img:1"}) {
		t.Errorf("manifest PUTs %v", mp)
	}

	// A copy within the registry mounts every blob.
	src, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := name.ParseReference(p.Addr + "/b/img:1")
	n := len(p.Exchanges())
	if err := remote.Write(dst, src); err != nil {
		t.Fatal(err)
	}
	ex = p.Exchanges()[n:]
	mounts := harness.Mounts(ex)
	if len(mounts) != 4 || harness.UploadBytes(ex) != 0 {
		t.Errorf("copy: mounts %v, %d upload bytes; want the 3 layers and the config mounted, none uploaded\n%s",
			mounts, harness.UploadBytes(ex), strings.Join(harness.UploadRequests(ex), "\n"))
	}
	for _, m := range mounts {
		if m.From != "a/img" || m.Repo != "b/img" {
			t.Errorf("mount %+v, want from a/img to b/img", m)
		}
	}
	gb := harness.BlobGetBytes(ex)
	for _, l := range layers {
		d, _ := l.Digest()
		if gb[d.String()] != 0 {
			t.Errorf("copy downloaded %d bytes of layer %s", gb[d.String()], d)
		}
	}
}
