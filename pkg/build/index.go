package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/oci"
	"github.com/kiln-build/kiln/pkg/progress"
)

// Layer path indexes (archive.LayerIndex) answer questions about an
// image's files (is /usr/local/bin a directory? is /bin a symlink?) without
// its layers. An index is made once per layer, the first time the layer is
// read (indexed for a question, read by COPY --from, unpacked for RUN), and
// kept in the store under the layer's diff ID; with a registry step cache
// it also travels through --cache-to/--cache-from, so a fresh store with a
// warm cache downloads no base layer to answer them.

// IndexCache keeps encoded layer indexes by diff ID (pkg/cache.Local and
// pkg/cache.Tiered are ones).
type IndexCache interface {
	GetIndex(ctx context.Context, diffID v1.Hash) ([]byte, error)
	PutIndex(ctx context.Context, diffID v1.Hash, data []byte) error
}

// layerIndexes are the indexes a build has at hand, made or read at most
// once per diff ID.
type layerIndexes struct {
	mu    sync.Mutex
	calls map[v1.Hash]*indexCall
}

type indexCall struct {
	done chan struct{}
	x    *archive.LayerIndex
	err  error
}

// indexCache is where the build keeps indexes: the step cache when it
// keeps them (a registry cache carries them), else the store.
func (b *builder) indexCache() IndexCache {
	if c, ok := b.opts.Cache.(IndexCache); ok {
		return c
	}
	return cache.NewLocal(b.opts.Store)
}

// call returns the call for diffID and whether the caller must make it.
func (b *builder) indexCall(diffID v1.Hash) (*indexCall, bool) {
	li := &b.indexes
	li.mu.Lock()
	defer li.mu.Unlock()
	if c, ok := li.calls[diffID]; ok {
		return c, false
	}
	if li.calls == nil {
		li.calls = map[v1.Hash]*indexCall{}
	}
	c := &indexCall{done: make(chan struct{})}
	li.calls[diffID] = c
	return c, true
}

// layerIndex returns the index of layer l (diff ID diffID) of image ref:
// kept from earlier, or made by reading the layer (downloading it when the
// store does not hold it, verified against its diff ID), which the build
// log reports with why, and then kept.
func (b *builder) layerIndex(ctx context.Context, l v1.Layer, diffID v1.Hash, ref, tag, why string) (*archive.LayerIndex, error) {
	c, mine := b.indexCall(diffID)
	if !mine {
		select {
		case <-c.done:
			return c.x, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	defer close(c.done)
	c.x, c.err = b.makeIndex(ctx, l, diffID, ref, tag, why)
	if c.err != nil {
		// A later question may try again (a cancelled read, say).
		b.indexes.mu.Lock()
		delete(b.indexes.calls, diffID)
		b.indexes.mu.Unlock()
	}
	return c.x, c.err
}

// cachedIndex returns the index of diffID when it is at hand without
// reading the layer (this build made or read it, or the store or the step
// cache keeps it), else nil. It never waits for an index being made.
func (b *builder) cachedIndex(ctx context.Context, diffID v1.Hash, tag string) *archive.LayerIndex {
	li := &b.indexes
	li.mu.Lock()
	c, ok := li.calls[diffID]
	li.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.x
		default:
			return nil
		}
	}
	x := b.indexFromCache(ctx, diffID, tag)
	if x == nil {
		return nil
	}
	b.haveIndex(x)
	return x
}

// haveIndex makes x the index of its layer for the rest of the build,
// unless the build has one made or being made.
func (b *builder) haveIndex(x *archive.LayerIndex) {
	li := &b.indexes
	li.mu.Lock()
	defer li.mu.Unlock()
	if _, ok := li.calls[x.DiffID]; ok {
		return
	}
	if li.calls == nil {
		li.calls = map[v1.Hash]*indexCall{}
	}
	c := &indexCall{done: make(chan struct{}), x: x}
	close(c.done)
	li.calls[x.DiffID] = c
}

// indexFromCache reads the index of diffID from the index cache (nil when
// it holds none, or a broken one: a warning).
func (b *builder) indexFromCache(ctx context.Context, diffID v1.Hash, tag string) *archive.LayerIndex {
	data, err := b.indexCache().GetIndex(ctx, diffID)
	if err != nil {
		b.opts.Progress.Warnf(tag, "layer index of %s: %v", diffID, err)
	}
	if data == nil {
		return nil
	}
	x, err := archive.DecodeIndex(data, diffID)
	if err != nil {
		b.opts.Progress.Warnf(tag, "%v; indexing the layer again", err)
		return nil
	}
	return x
}

func (b *builder) makeIndex(ctx context.Context, l v1.Layer, diffID v1.Hash, ref, tag, why string) (*archive.LayerIndex, error) {
	if x := b.indexFromCache(ctx, diffID, tag); x != nil {
		return x, nil
	}
	digest, err := l.Digest()
	if err != nil {
		return nil, fmt.Errorf("layer %s of %s: %w", diffID, ref, err)
	}
	if !b.opts.Store.HasBlob(digest) {
		size, _ := l.Size()
		b.opts.Progress.Notef(tag, "fetching base layer %s (%s) of %s for its path index: %s", shortDigest(digest), progress.FormatBytes(size), ref, why)
	}
	// Verified as it streams (digest against the manifest, diff ID against
	// the config) and kept in the store only when both match. Not keeping
	// it would save a sixth of the index's CPU (no blob write, fsync or
	// compressed hash), but a later build in the store that reads the
	// base's files (RUN, --chown by name) would download it again.
	rc, err := b.opts.Store.OpenVerifiedLayer(l, diffID)
	if err != nil {
		return nil, fmt.Errorf("reading layer %s of %s: %w", digest, ref, err)
	}
	// The store's reader hashes and checks the layer; the index is kept
	// only when Close (which reads and verifies the rest) says it matched.
	x, err := archive.IndexVerifiedTar(contextReader{ctx, rc}, diffID)
	if a, ok := rc.(interface{ Abort() }); ok && ctx.Err() != nil {
		// Given up: Close would read the rest of the layer first.
		a.Abort()
		return nil, fmt.Errorf("reading layer %s of %s: %w", digest, ref, ctx.Err())
	}
	if cerr := rc.Close(); cerr != nil {
		// A digest or diff ID mismatch explains a broken tar better
		// than the tar error.
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %s: layer %s: %w", ref, digest, err)
	}
	// Verified: it answers now. Encoding it and the store's fsyncs are
	// kept off the stage's way (a cold COPY-only build waits for this
	// index); the platform's build waits for them before it returns
	// (b.bg), and a cancelled build still keeps what it verified.
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		b.keepIndex(context.WithoutCancel(ctx), x, tag)
	}()
	return x, nil
}

// keepIndex stores an index (a failure is a warning: the build goes on).
func (b *builder) keepIndex(ctx context.Context, x *archive.LayerIndex, tag string) {
	data, err := x.Encode()
	if err == nil {
		err = b.indexCache().PutIndex(ctx, x.DiffID, data)
	}
	if err != nil {
		b.opts.Progress.Warnf(tag, "keeping the layer index of %s: %v", x.DiffID, err)
	}
}

// hasIndex reports whether the index of diffID is at hand (this build's
// memory or the local store).
func (b *builder) hasIndex(ctx context.Context, diffID v1.Hash) bool {
	b.indexes.mu.Lock()
	_, ok := b.indexes.calls[diffID]
	b.indexes.mu.Unlock()
	if ok {
		return true
	}
	data, err := cache.NewLocal(b.opts.Store).GetIndex(ctx, diffID)
	return err == nil && data != nil
}

// indexingOpener opens layer l uncompressed for a reader that reads all of
// it (the unpacking of RUN layers), checked against its diff ID as it
// streams (rootfs.Layer.Verified: the bytes are hashed once), and, when
// its index is not at hand yet, makes the index from the same bytes and
// keeps it once the whole layer went through and matched.
func (b *builder) indexingOpener(ctx context.Context, l v1.Layer, diffID v1.Hash, tag string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, err := b.uncompressed(l)
		if err != nil {
			return nil, err
		}
		r := &indexingReader{rc: rc, diffID: diffID, h: sha256.New(), b: b, ctx: ctx, tag: tag}
		if diffID.Algorithm == "sha256" && !b.hasIndex(ctx, diffID) {
			r.ix = archive.NewIndexer(diffID)
		}
		return r, nil
	}
}

// uncompressed opens l uncompressed. A registry's layer is read compressed
// (verified against its digest as it streams) and decompressed by the
// store's decompressor, faster than the layer's own.
func (b *builder) uncompressed(l v1.Layer) (io.ReadCloser, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	_, remote := b.sources[d]
	b.mu.Unlock()
	if !remote {
		return l.Uncompressed()
	}
	mt, err := l.MediaType()
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return oci.Decompress(rc, mt)
}

// indexingReader reads a layer, hashing it: at its end, Read returns an
// error instead of io.EOF when the content is not diffID's. With ix, the
// bytes are indexed too, and the index kept when they matched.
type indexingReader struct {
	rc     io.ReadCloser
	diffID v1.Hash
	h      hash.Hash
	ix     *archive.Indexer // nil: not indexing
	b      *builder
	ctx    context.Context
	tag    string
	eof    bool  // the whole layer was read and matched its diff ID
	err    error // sticky: it did not match
}

func (r *indexingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.rc.Read(p)
	r.h.Write(p[:n])
	if r.ix != nil {
		r.ix.Write(p[:n])
	}
	if err == io.EOF {
		if got := hex.EncodeToString(r.h.Sum(nil)); r.diffID.Algorithm == "sha256" && got != r.diffID.Hex {
			r.err = fmt.Errorf("its content is sha256:%s, not its diff ID %s", got, r.diffID)
			return n, r.err
		}
		r.eof = true
	}
	return n, err
}

func (r *indexingReader) Close() error {
	err := r.rc.Close()
	if r.ix == nil {
		return err
	}
	if !r.eof {
		r.ix.Abort()
		return err
	}
	if data, ierr := r.ix.Finish(); ierr == nil {
		if perr := r.b.indexCache().PutIndex(r.ctx, r.diffID, data); perr != nil {
			r.b.opts.Progress.Warnf(r.tag, "keeping the layer index of %s: %v", r.diffID, perr)
		}
	}
	return err
}

// contextReader stops reading when ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// lazyTree is what an image's layers hold, from their indexes: an
// archive.IndexStack that answers a question about one path with a lookup
// in each index (a build asks about a handful of paths of a base of
// thousands of files), and makes the merged tree of every entry only when
// all of it is read (COPY --from). It is made on first need (indexStack),
// or in the background while a stage goes on with guesses (startStack,
// speculate.go).
type lazyTree struct {
	treeMu sync.Mutex
	stack  *archive.IndexStack
	job    *treeJob
	// pathAnswers are answers about its paths kept in the store
	// (answers.go).
	pathAnswers pathAnswers
}

// treeJob is the making of a stack, awaited by everyone who needs it.
type treeJob struct {
	done  chan struct{}
	stack *archive.IndexStack
	err   error
}

// readyStack returns the stack when it is made, else nil.
func (src *imageSource) readyStack() *archive.IndexStack {
	src.treeMu.Lock()
	defer src.treeMu.Unlock()
	return src.stack
}

// speculating returns the stack being made, nil when none is.
func (src *imageSource) speculating() *treeJob {
	src.treeMu.Lock()
	defer src.treeMu.Unlock()
	return src.job
}

// awaitTree waits for a stack being made (nothing when none is).
func (src *imageSource) awaitTree(ctx context.Context) {
	if j := src.speculating(); j != nil {
		select {
		case <-j.done:
		case <-ctx.Done():
		}
	}
}

// startStack starts making the stack in the background (once: a job
// already running is returned); why says what needed it (for the log).
func (src *imageSource) startStack(b *builder, ctx context.Context, tag, why string) *treeJob {
	src.treeMu.Lock()
	defer src.treeMu.Unlock()
	if src.job != nil {
		return src.job
	}
	j := &treeJob{done: make(chan struct{})}
	if src.stack != nil {
		j.stack = src.stack
		close(j.done)
		return j
	}
	src.job = j
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		st, err := src.makeStack(ctx, b, tag, why, false)
		src.treeMu.Lock()
		if err == nil {
			src.stack = st
		}
		// A failed job (a cancelled read, say) is not kept: a later
		// question tries again.
		src.job = nil
		j.stack, j.err = st, err
		src.treeMu.Unlock()
		close(j.done)
	}()
	return j
}

// indexStack is what the image's layers hold, from their indexes, made on
// first use; why says what needed it (for the log).
func (src *imageSource) indexStack(ctx context.Context, b *builder, tag, why string) (*archive.IndexStack, error) {
	if st := src.readyStack(); st != nil {
		return st, nil
	}
	j := src.startStack(b, ctx, tag, why)
	select {
	case <-j.done:
		return j.stack, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// indexTree is the merged tree of every entry of the image's layers, made
// from their indexes on first use; why says what needed it (for the log).
func (src *imageSource) indexTree(ctx context.Context, b *builder, tag, why string) (*archive.Tree, error) {
	st, err := src.indexStack(ctx, b, tag, why)
	if err != nil {
		return nil, err
	}
	t, err := st.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %s: %w", src.ref, err)
	}
	return t, nil
}

// cachedStack makes the stack when every layer's index is at hand without
// reading a layer (cachedIndex); nil when one is not.
func (src *imageSource) cachedStack(ctx context.Context, b *builder, tag string) (*archive.IndexStack, error) {
	st, err := src.makeStack(ctx, b, tag, "", true)
	if st == nil || err != nil {
		return nil, err
	}
	src.treeMu.Lock()
	defer src.treeMu.Unlock()
	if src.stack == nil {
		src.stack = st
	}
	return src.stack, nil
}

// makeStack reads every layer's index (cacheOnly: only those at hand; nil
// when one is not) and stacks them.
func (src *imageSource) makeStack(ctx context.Context, b *builder, tag, why string, cacheOnly bool) (*archive.IndexStack, error) {
	diffIDs := src.cfg.RootFS.DiffIDs
	xs := make([]*archive.LayerIndex, len(src.layers))
	g, gctx := errgroup.WithContext(ctx)
	jobs := b.opts.Registry.Options().Jobs
	if jobs <= 0 {
		jobs = 4
	}
	g.SetLimit(jobs)
	for i, l := range src.layers {
		g.Go(func() error {
			if cacheOnly {
				xs[i] = b.cachedIndex(gctx, diffIDs[i], tag)
				return nil
			}
			x, err := b.layerIndex(gctx, l, diffIDs[i], src.ref, tag, why)
			xs[i] = x
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, x := range xs {
		if x == nil {
			return nil, nil
		}
	}
	st, err := archive.NewIndexStack(xs)
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %s: %w", src.ref, err)
	}
	return st, nil
}
