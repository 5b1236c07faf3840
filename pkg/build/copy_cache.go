package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/pkg/cache"
)

// Layers of COPY, ADD and WORKDIR are cached by what they hold, so that a
// rebuild with nothing changed reads, hashes and compresses nothing:
//
//   - The exact key names the layer's bytes: every entry's header as
//     written (mtimes included) and the digest of every file's content, and
//     the layer format. It is kept in the store's step cache (never pushed
//     with --cache-to) for every such layer, so a hit gives the very layer
//     that writing it again would give.
//   - The content key leaves times out (a fresh checkout has new mtimes but
//     the same files). It names the layer in chain keys (chain.go) and, for
//     COPY and ADD, in the registry step cache (Options.CacheCopies), as
//     BuildKit's content-based keys do: a hit there gives the layer with
//     the mtimes of the build that made it.
//
// The digests of build-context files come from the store's table of
// context digests (cache.FileSums) while the file's stat is unchanged: an
// unchanged rebuild only stats its files. A layer is written, and its keys
// computed in the same pass, when a digest is not at hand (a new or
// changed file, content from an image or an archive), unless the registry
// cache is on: then the missing files are read and hashed first, to look
// the content key up.

// layerKeys are a layer's exact and content keys (hex sha256).
type layerKeys struct {
	exact, content string
}

// copyInputs is what a cached layer depends on besides its content key,
// for its cache key: how the layer is written (compression, format,
// timestamp: the layerSpec RUN steps are keyed by too). As runStep, every
// field is keyed (TestCopyKey).
type copyInputs struct {
	Content string `json:"content"`
	layerSpec
}

func (s *stageState) copyInputs(key string) copyInputs {
	return copyInputs{Content: key, layerSpec: s.b.layerSpec()}
}

// Key is the step cache key of a COPY/ADD layer by its content key.
func (in copyInputs) Key() (string, error) {
	return cache.Key(cache.KindCopy, in)
}

// copyKey is the step-cache key of a COPY/ADD layer by its content key.
func (s *stageState) copyKey(contentKey string) (string, error) {
	return s.copyInputs(contentKey).Key()
}

// exactKey is the local step-cache key of a layer by its exact key.
func (s *stageState) exactKey(exact string) (string, error) {
	return cache.Key(cache.KindLayerExact, s.copyInputs(exact))
}

// layerHasher computes both keys from the entries' headers (as written)
// and their content digests.
type layerHasher struct {
	content, exact hash.Hash
}

func newLayerHasher() *layerHasher {
	return &layerHasher{content: sha256.New(), exact: sha256.New()}
}

// add hashes one entry: h is its layer header, digest the sha256 of its
// content ("" for entries without). The line is what
// fmt.Sprintf("\x00%q %c %o %d %d %d %q %d %d", ...) gives (keys in the
// step cache depend on it: TestLayerHasherLine), made with strconv: fmt
// was 9 % of a no-change rebuild's CPU.
func (k *layerHasher) add(h *tar.Header, digest string, ts *time.Time) {
	b := make([]byte, 0, 160)
	b = append(b, 0)
	b = strconv.AppendQuote(b, h.Name)
	b = append(b, ' ')
	b = utf8.AppendRune(b, rune(h.Typeflag))
	b = append(b, ' ')
	b = strconv.AppendInt(b, h.Mode, 8)
	for _, n := range []int64{int64(h.Uid), int64(h.Gid), h.Size} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, n, 10)
	}
	b = append(b, ' ')
	b = strconv.AppendQuote(b, h.Linkname)
	for _, n := range []int64{h.Devmajor, h.Devminor} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, n, 10)
	}
	if len(h.PAXRecords) > 0 {
		keys := make([]string, 0, len(h.PAXRecords))
		for key := range h.PAXRecords {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			b = append(b, ' ')
			b = strconv.AppendQuote(b, key)
			b = append(b, '=')
			b = strconv.AppendQuote(b, h.PAXRecords[key])
		}
	}
	if digest != "" {
		b = append(b, " sha256:"...)
		b = append(b, digest...)
	}
	b = append(b, '\n')
	k.content.Write(b)
	k.exact.Write(b)
	// The mtime as the tar writer writes it (archive.TarOptions).
	var mtime int64
	switch {
	case ts != nil:
		mtime = ts.Unix()
	case !h.ModTime.IsZero():
		mtime = h.ModTime.Unix()
	}
	b = append(b[:0], "mtime "...)
	b = strconv.AppendInt(b, mtime, 10)
	b = append(b, '\n')
	k.exact.Write(b)
}

func (k *layerHasher) sum() layerKeys {
	return layerKeys{exact: hex.EncodeToString(k.exact.Sum(nil)), content: hex.EncodeToString(k.content.Sum(nil))}
}

// hasContent reports whether a layer header carries content.
func hasContent(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size > 0 }

// sums is the build's table of context digests (read on first use).
func (b *builder) sums() *cache.FileSums {
	b.sumsOnce.Do(func() { b.fileSums = cache.OpenFileSums(b.opts.Store) })
	return b.fileSums
}

// saveSums keeps the table of context digests (a failure is a warning).
func (b *builder) saveSums() {
	if b.fileSums == nil {
		return
	}
	if err := b.fileSums.Save(); err != nil {
		b.opts.Progress.Warnf("", "%v", err)
	}
}

// statEntries notes the stat of every context file of sorted (for the
// table of digests) and returns the layer's keys when every content digest
// is at hand (complete).
func (s *stageState) statEntries(sorted []*copyEntry) (keys layerKeys, complete bool) {
	k := newLayerHasher()
	complete = true
	for _, e := range sorted {
		h := layerHeader(e)
		if !hasContent(h) {
			k.add(h, "", s.b.opts.Timestamp)
			continue
		}
		if e.digest == "" && e.ctxPath != "" {
			s.statContext(e)
		}
		if e.digest == "" {
			complete = false
			continue
		}
		k.add(h, e.digest, s.b.opts.Timestamp)
	}
	if !complete {
		return layerKeys{}, false
	}
	return k.sum(), true
}

// statContext stats a context file: its digest when the table has one for
// this stat and the file is still what the entry lists. A file the walk of
// the context found has its stat from the walk.
func (s *stageState) statContext(e *copyEntry) {
	if e.stat != nil {
		if d, ok := s.b.sums().Lookup(e.ctxPath, *e.stat); ok {
			e.digest = d
		}
		return
	}
	fi, err := os.Lstat(e.ctxPath)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.hdr.Size || !fi.ModTime().Equal(e.hdr.ModTime) {
		return
	}
	st, ok := cache.StatOf(fi)
	if !ok {
		return
	}
	e.stat = &st
	if d, ok := s.b.sums().Lookup(e.ctxPath, st); ok {
		e.digest = d
	}
}

// hashEntries computes the keys of the layer sorted would make, reading
// the files whose digest is not at hand (and keeping their digests).
// Context files are hashed on every core at once (a fresh checkout of a
// large context is read whole here); content from elsewhere (an image, an
// archive) is read in turn.
func (s *stageState) hashEntries(ctx context.Context, sorted []*copyEntry) (layerKeys, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	var rest []*copyEntry
	for _, e := range sorted {
		if !hasContent(layerHeader(e)) || e.digest != "" {
			continue
		}
		if e.ctxPath == "" {
			rest = append(rest, e)
			continue
		}
		g.Go(func() error { return s.hashEntry(gctx, e) })
	}
	err := g.Wait()
	for _, e := range rest {
		if err != nil {
			break
		}
		err = s.hashEntry(ctx, e)
	}
	if err != nil {
		return layerKeys{}, err
	}
	keys, complete := s.statEntries(sorted)
	if !complete {
		return layerKeys{}, fmt.Errorf("layer keys: a file has no digest")
	}
	return keys, nil
}

// hashBufs are hashEntry's read buffers.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// hashEntry reads e's content and notes its digest.
func (s *stageState) hashEntry(ctx context.Context, e *copyEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	buf := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(buf)
	fh := sha256.New()
	read := time.Now()
	if err := copyContent(fh, e, layerHeader(e), *buf); err != nil {
		return err
	}
	s.noteDigest(e, hex.EncodeToString(fh.Sum(nil)), read)
	return nil
}

// noteDigest records the digest of e's content, read from time read on.
func (s *stageState) noteDigest(e *copyEntry, digest string, read time.Time) {
	e.digest = digest
	if e.stat != nil && s.b.opts.Cache != nil {
		s.b.sums().Record(e.ctxPath, *e.stat, digest, read)
	}
}

// layerFromCache looks the layer of sorted up in the step cache: by its
// exact key in the store, then, for COPY and ADD (cacheable) with the
// registry cache on, by its content key. hit: the stage took it.
func (s *stageState) layerFromCache(ctx context.Context, sorted []*copyEntry, createdBy string, cacheable bool) (hit bool, err error) {
	if s.b.opts.Cache == nil {
		return false, nil
	}
	keys, complete := s.statEntries(sorted)
	remote := cacheable && s.b.opts.CacheCopies
	if !complete && remote {
		if keys, err = s.hashEntries(ctx, sorted); err != nil {
			return false, err
		}
		complete = true
	}
	if !complete {
		return false, nil
	}
	if key, err := s.exactKey(keys.exact); err == nil {
		if e := s.lookupLocal(ctx, key, createdBy); e != nil {
			s.takeCached(e.Layer, keys.content, createdBy, sorted)
			return true, nil
		}
	}
	if !remote {
		return false, nil
	}
	key, err := s.copyKey(keys.content)
	if err != nil {
		s.b.opts.Progress.Warnf(s.stageTag(), "step cache: no key (%v)", err)
		return false, nil
	}
	if e := s.lookupCache(ctx, key, s.stageTag(), "writing the layer", strings.TrimSpace(createdBy)); e != nil {
		s.takeCached(e.Layer, keys.content, createdBy, sorted)
		return true, nil
	}
	return false, nil
}

// lookupLocal reads an exact-key entry from the store's step cache.
func (s *stageState) lookupLocal(ctx context.Context, key, createdBy string) *cache.Entry {
	e, err := cache.NewLocal(s.b.opts.Store).Get(ctx, key)
	if err != nil {
		s.b.opts.Progress.Warnf(s.stageTag(), "step cache: %v (writing the layer)", err)
		return nil
	}
	if e != nil {
		d, _ := e.Layer.Digest()
		s.b.opts.Progress.Notef(s.stageTag(), "CACHED %s (layer %s, unchanged)", strings.TrimSpace(createdBy), shortDigest(d))
	}
	return e
}

// takeCached makes a cached layer the stage's next one.
func (s *stageState) takeCached(l v1.Layer, contentKey, createdBy string, sorted []*copyEntry) {
	s.cleanTemp()
	s.layers = append(s.layers, l)
	if s.b.keyed {
		s.links = append(s.links, chainLink{key: "layer " + contentKey})
	}
	s.noteEntries(sorted)
	s.history(createdBy, false)
}

// keepLayer adds a layer just written to the step cache: by its exact key
// in the store, and by its content key (for COPY and ADD with the registry
// cache on) where --cache-to exports it.
func (s *stageState) keepLayer(ctx context.Context, l v1.Layer, keys layerKeys, createdBy string, cacheable bool) {
	if s.b.opts.Cache == nil {
		return
	}
	e := cache.Entry{Layer: l, CreatedBy: createdBy}
	if key, err := s.exactKey(keys.exact); err == nil {
		err = cache.NewLocal(s.b.opts.Store).Put(ctx, key, e)
		if err != nil {
			s.b.opts.Progress.Warnf(s.stageTag(), "step cache: %v", err)
		}
	}
	if !cacheable || !s.b.opts.CacheCopies {
		return
	}
	key, err := s.copyKey(keys.content)
	if err == nil {
		err = s.b.opts.Cache.Put(ctx, key, e)
	}
	if err != nil {
		s.b.opts.Progress.Warnf(s.stageTag(), "step cache: %v", err)
	}
}
