package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/oci"
	"github.com/kiln-build/kiln/pkg/progress"
)

// WriteOption tells Write where a blob may already be.
type WriteOption func(*writeOptions)

type writeOptions struct {
	sources func(h v1.Hash) []string
	seen    func(h v1.Hash, repo string)
}

// WithSources gives the repositories ("host/path", as the local store
// records them) known to hold blob h. A source in the destination's
// registry is mounted from instead of uploading; the others only matter to
// whoever reads the blob's bytes (the store fetches a layer it does not
// hold from its source).
func WithSources(sources func(h v1.Hash) []string) WriteOption {
	return func(w *writeOptions) { w.sources = sources }
}

// WithSeen is told of every blob a destination repository now holds
// (uploaded, mounted, or found there), with the repository as WithSources
// lists them: recorded (the store's RecordSource), a later push of the
// blob to another repository of that registry mounts it from there instead
// of uploading it, as docker's distribution metadata does. Calls are
// serialised.
func WithSeen(seen func(h v1.Hash, repo string)) WriteOption {
	return func(w *writeOptions) { w.seen = seen }
}

// Write pushes a (an image or an index) to every ref and returns the
// descriptor of the manifest (or index) that each ref now names.
//
// For each destination repository, every blob of the image (and of every
// image of an index) is handled once, at most Options.Jobs at a time: skipped
// when the repository has it (HEAD), mounted when a repository of the same
// registry holds it (a layer of an image read from that registry, or a
// source from WithSources, or an earlier destination repository of this same
// Write), uploaded otherwise, verified against its digest while it
// streams. An index's child manifests the repository already has are
// skipped with their blobs. Manifests go last, children before their
// index; tags last of all. A failed blob transfer is retried from the start
// (Options.Retries times) with backoff, asking first whether an earlier
// attempt completed it.
//
// Destination repositories of different registries are written
// concurrently; within a registry the first one is written first and the
// others then mount from it. Progress events go to Options.Progress.
func (c *Client) Write(ctx context.Context, a oci.Artifact, refs []name.Reference, opts ...WriteOption) (v1.Descriptor, error) {
	ctx = orBackground(ctx)
	if err := oci.Check(a); err != nil {
		return v1.Descriptor{}, fmt.Errorf("write: %w", err)
	}
	var wo writeOptions
	for _, o := range opts {
		o(&wo)
	}
	if len(refs) == 0 {
		return v1.Descriptor{}, errors.New("write: no destination")
	}
	if err := c.o.allowWrite(refs); err != nil {
		return v1.Descriptor{}, err
	}
	var top *manifestSpec
	var err error
	if img, ok := oci.AsImage(a); ok {
		top, err = c.o.imageSpec(img, wo.sources)
	} else {
		idx, _ := oci.AsIndex(a)
		top, err = c.o.indexSpec(idx, wo.sources)
	}
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("push %s: %w", refs[0], err)
	}
	if wo.seen != nil {
		var mu sync.Mutex
		top.seen = func(h v1.Hash, repo string) {
			mu.Lock()
			defer mu.Unlock()
			wo.seen(h, repo)
		}
	}
	return c.writeSpec(ctx, top, refs, progress.OpPush)
}

// blobSpec is one blob a manifest needs.
type blobSpec struct {
	desc v1.Descriptor
	kind string
	// open reads the blob's bytes.
	open func(ctx context.Context) (io.ReadCloser, error)
	// sources are repositories known to hold it.
	sources []name.Repository
}

// manifestSpec is a manifest with what must be in a repository before it.
type manifestSpec struct {
	raw       []byte
	mediaType types.MediaType
	digest    v1.Hash
	blobs     []*blobSpec
	children  []childSpec
	// seen is WithSeen (set on the top manifest only).
	seen func(h v1.Hash, repo string)
}

// childSpec is a manifest an index names, loaded on demand.
type childSpec struct {
	desc v1.Descriptor
	load func(ctx context.Context) (*manifestSpec, error)
}

func (m *manifestSpec) kind() string {
	if m.mediaType.IsIndex() {
		return progress.KindIndex
	}
	return progress.KindManifest
}

func (m *manifestSpec) descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: m.mediaType, Digest: m.digest, Size: int64(len(m.raw))}
}

// nonDistributable reports layers that registries do not take (Windows
// base layers with URLs): docker never pushes them, nor does kiln.
func nonDistributable(mt types.MediaType) bool {
	switch mt {
	case types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return true
	}
	return false
}

// sourceRepos parses recorded sources; unparsable ones are ignored.
func (o Options) sourceRepos(srcs []string) []name.Repository {
	var out []name.Repository
	for _, s := range srcs {
		r, err := parseReference(s, o)
		if err != nil {
			continue
		}
		out = append(out, r.Context())
	}
	return out
}

// imageSpec describes img for writing.
func (o Options) imageSpec(img v1.Image, sources func(v1.Hash) []string) (*manifestSpec, error) {
	raw, mt, m, err := readSpecHead(img, "manifest", v1.ParseManifest, func(m *v1.Manifest) types.MediaType { return m.MediaType })
	if err != nil {
		return nil, err
	}
	spec := &manifestSpec{raw: raw, mediaType: mt, digest: sha256Of(raw)}
	cfgDesc := m.Config
	spec.blobs = append(spec.blobs, &blobSpec{desc: cfgDesc, kind: progress.KindConfig,
		open: func(context.Context) (io.ReadCloser, error) {
			b, err := img.RawConfigFile()
			if err != nil {
				return nil, err
			}
			return io.NopCloser(bytes.NewReader(b)), nil
		}})
	if sources != nil {
		// A config pushed before (WithSeen) is mounted like a layer.
		spec.blobs[0].sources = o.sourceRepos(sources(cfgDesc.Digest))
	}
	for _, ld := range m.Layers {
		if nonDistributable(ld.MediaType) {
			continue
		}
		b := &blobSpec{desc: ld, kind: progress.KindLayer}
		h := ld.Digest
		l, lerr := img.LayerByDigest(h)
		if lerr == nil {
			if ml, ok := l.(*remote.MountableLayer); ok && ml.Reference != nil {
				b.sources = append(b.sources, ml.Reference.Context())
			}
		}
		if sources != nil {
			b.sources = append(b.sources, o.sourceRepos(sources(h))...)
		}
		b.open = func(context.Context) (io.ReadCloser, error) {
			if lerr != nil {
				return nil, lerr
			}
			return l.Compressed()
		}
		spec.blobs = append(spec.blobs, b)
	}
	return spec, nil
}

// readSpecHead reads what every manifest to write starts with: its raw
// bytes, its media type (the parsed manifest's own when a gives none)
// and the parsed manifest; what ("manifest", "index") names it in errors.
func readSpecHead[M any](a oci.Artifact, what string, parse func(io.Reader) (*M, error), mediaType func(*M) types.MediaType) ([]byte, types.MediaType, *M, error) {
	raw, err := a.RawManifest()
	if err != nil {
		return nil, "", nil, fmt.Errorf("reading %s: %w", what, err)
	}
	mt, err := a.MediaType()
	if err != nil {
		return nil, "", nil, fmt.Errorf("reading %s media type: %w", what, err)
	}
	m, err := parse(bytes.NewReader(raw))
	if err != nil {
		return nil, "", nil, fmt.Errorf("parsing %s: %w", what, err)
	}
	if mt == "" {
		mt = mediaType(m)
	}
	return raw, mt, m, nil
}

// indexSpec describes idx (children loaded on demand) for writing.
func (o Options) indexSpec(idx v1.ImageIndex, sources func(v1.Hash) []string) (*manifestSpec, error) {
	raw, mt, im, err := readSpecHead(idx, "index", v1.ParseIndexManifest, func(m *v1.IndexManifest) types.MediaType { return m.MediaType })
	if err != nil {
		return nil, err
	}
	spec := &manifestSpec{raw: raw, mediaType: mt, digest: sha256Of(raw)}
	for _, c := range im.Manifests {
		c := c
		cs := childSpec{desc: c}
		switch {
		case c.MediaType.IsIndex():
			cs.load = func(context.Context) (*manifestSpec, error) {
				child, err := idx.ImageIndex(c.Digest)
				if err != nil {
					return nil, err
				}
				return o.indexSpec(child, sources)
			}
		case c.MediaType.IsImage():
			cs.load = func(context.Context) (*manifestSpec, error) {
				child, err := idx.Image(c.Digest)
				if err != nil {
					return nil, err
				}
				return o.imageSpec(child, sources)
			}
		default:
			cs.load = func(context.Context) (*manifestSpec, error) {
				return nil, &Error{Kind: ErrUnsupportedMediaType,
					msg: fmt.Sprintf("index child %s has media type %q, which kiln cannot push from here (kiln copy can)", c.Digest, c.MediaType)}
			}
		}
		spec.children = append(spec.children, cs)
	}
	return spec, nil
}

func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// writeSpec writes top to every ref: repositories grouped by registry.
func (c *Client) writeSpec(ctx context.Context, top *manifestSpec, refs []name.Reference, op string) (v1.Descriptor, error) {
	type repoGroup struct {
		repo name.Repository
		refs []name.Reference
	}
	byRepo := map[string]*repoGroup{}
	var order []string
	for _, r := range refs {
		k := r.Context().String()
		g, ok := byRepo[k]
		if !ok {
			g = &repoGroup{repo: r.Context()}
			byRepo[k] = g
			order = append(order, k)
		}
		g.refs = append(g.refs, r)
	}
	byRegistry := map[string][]*repoGroup{}
	var regOrder []string
	for _, k := range order {
		g := byRepo[k]
		reg := canonicalHost(g.repo.RegistryStr())
		if _, ok := byRegistry[reg]; !ok {
			regOrder = append(regOrder, reg)
		}
		byRegistry[reg] = append(byRegistry[reg], g)
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for _, reg := range regOrder {
		groups := byRegistry[reg]
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := groups[0]
			if err := c.writeRepo(ctx, top, first.repo, first.refs, op, nil); err != nil {
				fail(err)
				return
			}
			var inner sync.WaitGroup
			for _, g := range groups[1:] {
				inner.Add(1)
				go func() {
					defer inner.Done()
					if err := c.writeRepo(ctx, top, g.repo, g.refs, op, []name.Repository{first.repo}); err != nil {
						fail(err)
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return v1.Descriptor{}, errors.Join(errs...)
	}
	return top.descriptor(), nil
}

// repoWriter writes to one repository.
type repoWriter struct {
	c      *Client
	repo   name.Repository
	client *http.Client
	op     string
	ref    string // for events and messages
	extra  []name.Repository
	// noMount: the token covers no mount source.
	noMount bool
	// seen is told of every blob the repository holds (WithSeen).
	seen func(h v1.Hash, repo string)
}

// writeRepo writes top (and what it needs) to repo and tags it with refs.
func (c *Client) writeRepo(ctx context.Context, top *manifestSpec, repo name.Repository, refs []name.Reference, op string, extra []name.Repository) error {
	what := op + " " + refs[0].String()
	// Load every child manifest; collect the blobs and mount sources.
	all, err := loadTree(ctx, top)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	mountFrom := map[string]name.Repository{}
	for _, m := range all {
		for _, b := range m.blobs {
			for _, s := range append(b.sources, extra...) {
				if sameRegistry(s, repo) && s.String() != repo.String() {
					mountFrom[s.String()] = s
				}
			}
		}
	}
	var scopes []string
	scopes = append(scopes, repo.Scope(transport.PushScope))
	keys := make([]string, 0, len(mountFrom))
	for k := range mountFrom {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		scopes = append(scopes, mountFrom[k].Scope(transport.PullScope))
	}
	rt, err := c.authTransport(ctx, repo, scopes)
	noMount := false
	if err != nil && len(scopes) > 1 && ctx.Err() == nil {
		// A token service may refuse pull access to a mount source outright
		// rather than leave it out of the token: push without mounting.
		if rt2, err2 := c.authTransport(ctx, repo, scopes[:1]); err2 == nil {
			rt, err, noMount = rt2, nil, true
		}
	}
	if err != nil {
		return c.describeErr(ctx, what, repo, err)
	}
	w := &repoWriter{c: c, repo: repo, client: &http.Client{Transport: rt}, op: op, ref: refs[0].String(), extra: extra, noMount: noMount, seen: top.seen}

	// Child manifests the repository has need nothing more.
	var needed []*manifestSpec
	for _, m := range all {
		if m != top {
			has, err := w.hasManifest(ctx, m.digest)
			if err != nil {
				return c.describeErr(ctx, fmt.Sprintf("%s: checking manifest %s", what, m.digest), repo, err)
			}
			if has {
				progress.Send(c.o.Progress, progress.Event{Op: op, Action: progress.Exists, Ref: w.ref, Kind: m.kind(), Digest: m.digest.String(), Size: int64(len(m.raw))})
				continue
			}
		}
		needed = append(needed, m)
	}
	var blobs []*blobSpec
	seen := map[v1.Hash]bool{}
	for _, m := range needed {
		for _, b := range m.blobs {
			if !seen[b.desc.Digest] {
				seen[b.desc.Digest] = true
				blobs = append(blobs, b)
			}
		}
	}
	if err := w.writeBlobs(ctx, blobs); err != nil {
		return err
	}
	// Manifests: needed is in post-order (children first), top last.
	for _, m := range needed {
		if m == top {
			continue
		}
		if err := w.putReferrer(ctx, m, m.digest.String(), true); err != nil {
			return c.describeErr(ctx, fmt.Sprintf("%s: manifest %s", what, m.digest), repo, err)
		}
	}
	for i, r := range refs {
		id := r.Identifier()
		if err := w.putReferrer(ctx, top, id, i == 0); err != nil {
			return c.describeErr(ctx, op+" "+r.String(), repo, err)
		}
		progress.Send(c.o.Progress, progress.Event{Op: op, Action: progress.Manifest, Ref: r.String(), Kind: top.kind(), Digest: top.digest.String(), Size: int64(len(top.raw))})
	}
	return nil
}

// maxTreeManifests bounds how many manifests one index may bring.
const maxTreeManifests = 10000

// loadTree loads top's children recursively and returns every manifest in
// post-order (children before parents, top last), each digest once.
func loadTree(ctx context.Context, top *manifestSpec) ([]*manifestSpec, error) {
	var out []*manifestSpec
	seen := map[v1.Hash]bool{}
	var walk func(m *manifestSpec, depth int) error
	walk = func(m *manifestSpec, depth int) error {
		if depth > maxIndexDepth {
			return fmt.Errorf("image indexes nested more than %d deep", maxIndexDepth)
		}
		for _, c := range m.children {
			if seen[c.desc.Digest] {
				continue
			}
			seen[c.desc.Digest] = true
			if err := ctx.Err(); err != nil {
				return err
			}
			child, err := c.load(ctx)
			if err != nil {
				return fmt.Errorf("index child %s: %w", c.desc.Digest, err)
			}
			if child.digest != c.desc.Digest {
				return &Error{Kind: ErrDigestMismatch, msg: fmt.Sprintf("index child %s has digest %s", c.desc.Digest, child.digest)}
			}
			if err := walk(child, depth+1); err != nil {
				return err
			}
		}
		out = append(out, m)
		if len(out) > maxTreeManifests {
			return fmt.Errorf("more than %d manifests in one index", maxTreeManifests)
		}
		return nil
	}
	if err := walk(top, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// sameRegistry reports whether a and b are repositories of one registry.
func sameRegistry(a, b name.Repository) bool {
	return canonicalHost(a.RegistryStr()) == canonicalHost(b.RegistryStr())
}

// authTransport is an authenticated transport to repo's registry for scopes.
func (c *Client) authTransport(ctx context.Context, repo name.Repository, scopes []string) (http.RoundTripper, error) {
	auth, err := authn.Resolve(ctx, c.keychain, repo)
	if err != nil {
		return nil, err
	}
	rt := transport.NewUserAgent(c.rt, c.o.userAgent())
	return transport.NewWithContext(ctx, repo.Registry, auth, rt, scopes)
}

func (w *repoWriter) url(path string) *url.URL {
	return &url.URL{Scheme: w.repo.Scheme(), Host: w.repo.RegistryStr(), Path: "/v2/" + w.repo.RepositoryStr() + path}
}

func (w *repoWriter) do(ctx context.Context, method string, u *url.URL, body io.Reader, size int64, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if size >= 0 && body != nil {
		req.ContentLength = size
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return w.client.Do(req)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// manifestAccept lists the manifest types kiln asks for.
var manifestAccept = strings.Join([]string{
	string(types.OCIManifestSchema1), string(types.DockerManifestSchema2),
	string(types.OCIImageIndex), string(types.DockerManifestList),
}, ", ")

// hasManifest asks whether the repository has the manifest with digest d.
func (w *repoWriter) hasManifest(ctx context.Context, d v1.Hash) (bool, error) {
	resp, err := w.do(ctx, http.MethodHead, w.url("/manifests/"+d.String()), nil, -1, map[string]string{"Accept": manifestAccept})
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, transport.CheckError(resp, http.StatusOK)
}

// putManifest PUTs m under tag or digest id and returns the registry's
// OCI-Subject header (set when it took a subject into its referrers).
func (w *repoWriter) putManifest(ctx context.Context, m *manifestSpec, id string) (string, error) {
	resp, err := w.do(ctx, http.MethodPut, w.url("/manifests/"+id), bytes.NewReader(m.raw), int64(len(m.raw)),
		map[string]string{"Content-Type": string(m.mediaType)})
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if err := transport.CheckError(resp, http.StatusOK, http.StatusCreated, http.StatusAccepted); err != nil {
		return "", err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != m.digest.String() {
		return "", &Error{Kind: ErrDigestMismatch, Registry: w.repo.RegistryStr(),
			msg: fmt.Sprintf("registry %s stored manifest %s as %s", displayHost(w.repo.RegistryStr()), m.digest, got)}
	}
	return resp.Header.Get("OCI-Subject"), nil
}

// putReferrer PUTs m under id and, when m has a subject, makes it findable
// from there (linkSubject).
func (w *repoWriter) putReferrer(ctx context.Context, m *manifestSpec, id string, link bool) error {
	sub, err := w.putManifest(ctx, m, id)
	if err != nil || !link {
		return err
	}
	return w.linkSubject(ctx, m, sub)
}

// writeBlobs puts blobs into the repository, Options.Jobs at a time.
func (w *repoWriter) writeBlobs(ctx context.Context, blobs []*blobSpec) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.c.o.jobs())
	for _, b := range blobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return w.writeBlob(gctx, b) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// blobOutcome is how a blob got into the repository.
type blobOutcome struct {
	action progress.Action
	from   string
	moved  int64
}

// writeBlob puts one blob, retrying the whole transfer on transient
// failures.
func (w *repoWriter) writeBlob(ctx context.Context, b *blobSpec) error {
	ev := progress.Event{Op: w.op, Ref: w.ref, Kind: b.kind, Digest: b.desc.Digest.String(), Size: b.desc.Size}
	what := fmt.Sprintf("%s %s: %s %s", w.op, w.ref, b.kind, b.desc.Digest)
	head := true
	var out blobOutcome
	err := Retry(ctx, w.c.o.retries(), w.c.o.retryDelay(), blobRetryable, func(err error) {
		e := ev
		e.Action, e.Error = progress.Retry, shortErr(err)
		progress.Send(w.c.o.Progress, e)
	}, func() (err error) {
		out, head, err = w.tryBlob(ctx, b, ev, head)
		return err
	})
	if err == nil {
		e := ev
		e.Action, e.From, e.Current = out.action, out.from, out.moved
		progress.Send(w.c.o.Progress, e)
		if w.seen != nil {
			w.seen(b.desc.Digest, w.repo.Name())
		}
		return nil
	}
	e := ev
	e.Action = progress.Failed
	var derr error
	if own := (*Error)(nil); errors.As(err, &own) {
		// Already described (kiln's own checks): add the context.
		derr = fmt.Errorf("%s %s: %w", w.op, w.ref, err)
	} else {
		derr = w.c.describeErr(ctx, what, w.repo, err)
	}
	e.Error = derr.Error()
	progress.Send(w.c.o.Progress, e)
	return derr
}

// shortErr is an error's text cut to one short line, for retry events.
func shortErr(err error) string { return firstLine(err.Error()) }

// blobRetryable reports whether a failed blob transfer is worth starting
// again: transient statuses, lost upload sessions, network failures that
// the transport could not retry itself (a streamed body). Not: refusals,
// digest mismatches, cancellations, or requests the transport already
// retried to exhaustion.
func blobRetryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDigestMismatch) ||
		errors.Is(err, ErrBlobUnknown) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusRequestedRangeNotSatisfiable || te.StatusCode == http.StatusNotFound && hasCode(te, transport.BlobUploadUnknownErrorCode) {
			return true
		}
		// DIGEST_INVALID: kiln verified what it sent, so the bytes changed on
		// the way; another attempt may go through.
		if hasCode(te, transport.BlobUploadUnknownErrorCode) || hasCode(te, transport.BlobUploadInvalidErrorCode) ||
			hasCode(te, transport.DigestInvalidErrorCode) {
			return true
		}
		return retryStatus[te.StatusCode]
	}
	var re *retriedError
	if errors.As(err, &re) {
		return re.attempts <= 1 && retryableError(re.err)
	}
	return retryableError(err)
}

// tryBlob makes one attempt: HEAD (unless head is false: the previous
// attempt failed before it could have completed the blob), then mounts,
// then an upload. headNext says whether a next attempt must ask again
// whether the blob arrived (a failure that may have completed it: a mount
// or a HEAD whose answer was lost).
func (w *repoWriter) tryBlob(ctx context.Context, b *blobSpec, ev progress.Event, head bool) (out blobOutcome, headNext bool, err error) {
	h := b.desc.Digest
	if head {
		has, err := w.hasBlob(ctx, h)
		if err != nil {
			return blobOutcome{}, true, err
		}
		if has {
			return blobOutcome{action: progress.Exists}, false, nil
		}
	}
	var location *url.URL
	seen := map[string]bool{}
	for _, s := range append(append([]name.Repository(nil), b.sources...), w.extra...) {
		if w.noMount || !sameRegistry(s, w.repo) || s.String() == w.repo.String() || seen[s.String()] {
			continue
		}
		seen[s.String()] = true
		mounted, loc, err := w.mount(ctx, h, s)
		if err != nil {
			return blobOutcome{}, true, err
		}
		if mounted {
			return blobOutcome{action: progress.Mounted, from: s.RepositoryStr()}, false, nil
		}
		if loc != nil {
			location = loc
			break
		}
	}
	if location == nil {
		if location, err = w.startUpload(ctx); err != nil {
			return blobOutcome{}, false, err
		}
	}
	moved, err := w.upload(ctx, b, location, ev)
	if err != nil {
		// upload asks itself whether a failed closing PUT completed the blob.
		return blobOutcome{}, false, err
	}
	return blobOutcome{action: progress.Done, moved: moved}, false, nil
}

// hasBlob asks whether the repository has blob h.
func (w *repoWriter) hasBlob(ctx context.Context, h v1.Hash) (bool, error) {
	resp, err := w.do(ctx, http.MethodHead, w.url("/blobs/"+h.String()), nil, -1, nil)
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, transport.CheckError(resp, http.StatusOK)
}

// mount asks the registry to mount h from repository from. mounted is true
// on 201; otherwise a 202's upload session is returned to upload into. A
// registry that refuses the mount request in another way gets a plain
// upload (nil, nil), except for authorization failures.
func (w *repoWriter) mount(ctx context.Context, h v1.Hash, from name.Repository) (bool, *url.URL, error) {
	u := w.url("/blobs/uploads/")
	u.RawQuery = url.Values{"mount": {h.String()}, "from": {from.RepositoryStr()}}.Encode()
	resp, err := w.do(ctx, http.MethodPost, u, nil, -1, nil)
	if err != nil {
		return false, nil, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, nil, nil
	case http.StatusAccepted:
		loc, err := location(resp)
		return false, loc, err
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, nil, transport.CheckError(resp, http.StatusCreated)
	}
	if retryStatus[resp.StatusCode] {
		return false, nil, transport.CheckError(resp, http.StatusCreated)
	}
	return false, nil, nil
}

// startUpload opens an upload session.
func (w *repoWriter) startUpload(ctx context.Context) (*url.URL, error) {
	resp, err := w.do(ctx, http.MethodPost, w.url("/blobs/uploads/"), nil, -1, nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		return nil, err
	}
	return location(resp)
}

// location resolves an upload response's Location header.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("registry answered %d to %s %s without a Location", resp.StatusCode, resp.Request.Method, resp.Request.URL.Path)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("registry gave an invalid upload location: %v", err)
	}
	return resp.Request.URL.ResolveReference(u), nil
}

// upload streams the blob into the session at loc (one PATCH, then the
// closing PUT with the digest) and returns the bytes sent. The bytes are
// hashed as they go: content that does not match its digest makes the
// PATCH fail, so the registry never completes a corrupt blob.
func (w *repoWriter) upload(ctx context.Context, b *blobSpec, loc *url.URL, ev progress.Event) (int64, error) {
	if b.open == nil {
		return 0, &Error{Kind: ErrBlobUnknown, Registry: w.repo.RegistryStr(), msg: fmt.Sprintf("blob %s is not available to upload", b.desc.Digest)}
	}
	rc, err := b.open(ctx)
	if err != nil {
		return 0, &Error{Kind: ErrBlobUnknown, Registry: w.repo.RegistryStr(), msg: fmt.Sprintf("reading %s %s: %v", b.kind, b.desc.Digest, err), err: err}
	}
	defer rc.Close()
	start := ev
	start.Action = progress.Start
	progress.Send(w.c.o.Progress, start)
	vr := newVerifier(rc, b.desc.Digest, b.desc.Size)
	pr := progress.NewReader(vr, w.c.o.Progress, ev)
	size := b.desc.Size
	if size <= 0 {
		size = -1
	}
	resp, err := w.do(ctx, http.MethodPatch, loc, pr, size, map[string]string{"Content-Type": "application/octet-stream"})
	if verr := vr.failure(); verr != nil {
		if resp != nil {
			drain(resp)
		}
		return 0, verr
	}
	if err != nil {
		return 0, err
	}
	if err := transport.CheckError(resp, http.StatusAccepted, http.StatusNoContent, http.StatusCreated); err != nil {
		drain(resp)
		return 0, err
	}
	next, err := location(resp)
	drain(resp)
	if err != nil {
		return 0, err
	}
	if !vr.complete() {
		// The registry answered before reading everything.
		return 0, fmt.Errorf("upload of %s ended after %d of %d bytes", b.desc.Digest, vr.n, b.desc.Size)
	}
	q := next.Query()
	q.Set("digest", b.desc.Digest.String())
	next.RawQuery = q.Encode()
	resp, err = w.do(ctx, http.MethodPut, next, http.NoBody, 0, map[string]string{"Content-Type": "application/octet-stream"})
	if err == nil {
		err = transport.CheckError(resp, http.StatusCreated, http.StatusNoContent, http.StatusAccepted)
		drain(resp)
	}
	if err != nil {
		// A retried PUT whose first attempt completed the upload (and lost
		// its answer) fails on the closed session: the blob is there.
		if has, herr := w.hasBlob(ctx, b.desc.Digest); herr == nil && has {
			return vr.n, nil
		}
		return 0, err
	}
	return vr.n, nil
}

// verifier hashes what is read through it; at the end it fails the read
// (instead of io.EOF) when the size or the digest is not the expected one.
// It also remembers why reading the source failed, since the HTTP client
// reports a failed request body only as a failed request.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	want v1.Hash
	size int64
	n    int64

	mu     sync.Mutex
	err    error // content mismatch
	srcErr error // the source could not be read
	eof    bool
}

func newVerifier(r io.Reader, want v1.Hash, size int64) *verifier {
	return &verifier{r: r, h: sha256.New(), want: want, size: size}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if n > 0 {
		v.h.Write(p[:n])
		v.n += int64(n)
		if v.size > 0 && v.n > v.size {
			return 0, v.fail(fmt.Errorf("blob %s: more than the %d bytes its descriptor says", v.want, v.size))
		}
	}
	switch {
	case err == io.EOF:
		if v.size > 0 && v.n != v.size {
			return n, v.fail(fmt.Errorf("blob %s: %d bytes, its descriptor says %d", v.want, v.n, v.size))
		}
		if v.want.Algorithm == "sha256" {
			if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
				return n, v.fail(fmt.Errorf("blob %s: content has digest sha256:%s", v.want, got))
			}
		}
		v.mu.Lock()
		v.eof = true
		v.mu.Unlock()
	case err != nil:
		if strings.Contains(err.Error(), "error verifying") || errors.Is(err, ErrDigestMismatch) {
			// go-containerregistry's own verification of a download.
			return n, v.fail(fmt.Errorf("blob %s: %v", v.want, err))
		}
		v.mu.Lock()
		v.srcErr = err
		v.mu.Unlock()
	}
	return n, err
}

func (v *verifier) fail(err error) error {
	e := &Error{Kind: ErrDigestMismatch, msg: err.Error() + " (corrupt source: not uploaded)"}
	v.mu.Lock()
	v.err = e
	v.mu.Unlock()
	return e
}

// failure is why the source failed, if it did.
func (v *verifier) failure() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return v.err
	}
	if v.srcErr != nil {
		return fmt.Errorf("reading blob %s: %w", v.want, v.srcErr)
	}
	return nil
}

func (v *verifier) complete() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.eof
}

// anyManifest is the union of the manifest formats Copy reads.
type anyManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	Config        *v1.Descriptor  `json:"config"`
	Layers        []v1.Descriptor `json:"layers"`
	Blobs         []v1.Descriptor `json:"blobs"` // OCI artifact manifests
	Manifests     []v1.Descriptor `json:"manifests"`
}

// parseAnyManifest reads raw's media type (the declared one, else the
// registry's Content-Type) and its references.
func parseAnyManifest(raw []byte, contentType types.MediaType) (types.MediaType, *anyManifest, error) {
	var m anyManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", nil, fmt.Errorf("manifest is not valid JSON")
	}
	mt := m.MediaType
	if mt == "" {
		mt = contentType
	}
	if mt == "" {
		switch {
		case m.Manifests != nil:
			mt = types.OCIImageIndex
		case m.Config != nil:
			mt = types.OCIManifestSchema1
		}
	}
	if m.SchemaVersion == 1 || mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed {
		return mt, nil, &Error{Kind: ErrUnsupportedMediaType, msg: "Docker schema 1 manifests are not supported; push the image again with a current client"}
	}
	return mt, &m, nil
}
