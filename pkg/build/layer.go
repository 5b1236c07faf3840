package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/store"
)

// maxLayerWriters bounds how many layers are written at once. Writing a
// layer is compression, hashing and file I/O; steps after it rarely need
// its bytes, so a stage goes on while earlier layers are still being
// written and their fsyncs overlap with later compression.
const maxLayerWriters = 3

// writersWhileIndexing bounds the layer writers while the stage's base
// index is being made for its guesses (speculate.go): the index's
// inflation is the one serial chain of a cold COPY-only build, and the
// stage waits for it, so it keeps a core (GOMAXPROCS-1 writers, at least
// one). Only the order of work changes, never a byte. java-layers cold on
// the shared 2-core VM (7 interleaved runs, medians, wall / CPU):
// 1.56 s / 1.89 s → 1.44 s / 1.82 s.
func writersWhileIndexing() int {
	return min(maxLayerWriters, max(1, runtime.GOMAXPROCS(0)-1))
}

// indexingTurn waits, while base's index is being made, for a turn among
// the writers allowed then (nil: no wait needed); the returned function
// ends the turn.
func (b *builder) indexingTurn(ctx context.Context, base *imageSource) func() {
	if base == nil || base.speculating() == nil {
		return nil
	}
	select {
	case b.indexingSem <- struct{}{}:
		return func() { <-b.indexingSem }
	case <-ctx.Done():
		return nil // writeLayer fails on ctx
	}
}

// addLayer turns entries into one new layer of the stage. The stage
// records the layer at once (its entries, its history) and the bytes are
// written in the background; wrap locates a write error in the Dockerfile.
func (s *stageState) addLayer(ctx context.Context, entries []*copyEntry, createdBy string, wrap func(error) error) error {
	return s.addLayerCached(ctx, entries, createdBy, false, wrap)
}

// addLayerCached is addLayer; with cacheable (COPY and ADD) and a build
// that exchanges its step cache with a registry (Options.CacheCopies), the
// layer is looked up by its content key first and, when found, taken from
// the cache (its files' mtimes are then those of the build that made it, as
// with BuildKit); otherwise it is written and added to the cache.
func (s *stageState) addLayerCached(ctx context.Context, entries []*copyEntry, createdBy string, cacheable bool, wrap func(error) error) error {
	// Sorted and de-duplicated (the last entry for a path wins), parents
	// before children.
	byDest := map[string]*copyEntry{}
	for _, e := range entries {
		byDest[e.dest] = e
	}
	sorted := make([]*copyEntry, 0, len(byDest))
	for _, e := range byDest {
		if e.dest == "/" {
			continue
		}
		sorted = append(sorted, e)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].dest < sorted[j].dest })

	if hit, err := s.layerFromCache(ctx, sorted, createdBy, cacheable); err != nil || hit {
		if err != nil {
			return wrap(err)
		}
		return nil
	}

	// The spooled content now belongs to the writer.
	temp := s.tempDirs
	s.tempDirs = nil
	fl := &futureLayer{done: make(chan struct{}), mediaType: s.b.opts.Compression.MediaType(s.b.opts.Format == FormatOCI)}
	s.pending = append(s.pending, fl)
	if s.b.keyed {
		s.links = append(s.links, chainLink{layer: fl})
	}
	var base *imageSource
	if s.known != nil {
		base = s.known.base
	}
	s.b.layerSem <- struct{}{}
	go func() {
		defer func() { <-s.b.layerSem }()
		if end := s.b.indexingTurn(ctx, base); end != nil {
			defer end()
		}
		defer func() {
			for _, release := range temp {
				release()
			}
		}()
		l, keys, err := s.writeLayer(ctx, sorted)
		if err != nil {
			err = wrap(err)
		}
		fl.contentKey = keys.content
		// Into the cache before anyone waiting on the layer goes on.
		if err == nil {
			s.keepLayer(ctx, l, keys, createdBy, cacheable)
		}
		fl.resolve(l, err)
	}()

	s.layers = append(s.layers, fl)
	s.noteEntries(sorted)
	s.history(createdBy, false)
	return nil
}

// noteEntries records a new layer's entries in the known tree.
func (s *stageState) noteEntries(sorted []*copyEntry) {
	for _, e := range sorted {
		s.known.add(e.dest, e.hdr)
		if e.dest == "/etc/passwd" || e.dest == "/etc/group" {
			s.users = nil
		}
	}
}

// copyContent copies the content of entry e (written with header h) to w
// through buf, checking that it still has the size it had when listed.
// Entries that are not regular files, or empty, have none.
func copyContent(w io.Writer, e *copyEntry, h *tar.Header, buf []byte) error {
	if h.Typeflag != tar.TypeReg || h.Size == 0 {
		return nil
	}
	if e.open == nil {
		return fmt.Errorf("%s: no content", e.dest)
	}
	r, err := e.open()
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(r, h.Size), buf)
	if err != nil {
		return fmt.Errorf("%s: %w", e.dest, err)
	}
	if n != h.Size {
		return fmt.Errorf("%s: changed while being copied (%d bytes expected, %d read)", e.dest, h.Size, n)
	}
	return nil
}

// layerHeader is the tar header an entry is written with.
func layerHeader(e *copyEntry) *tar.Header {
	h := cloneHeader(e.hdr)
	h.Name = strings.TrimPrefix(e.dest, "/")
	if h.Typeflag == tar.TypeLink {
		h.Linkname = strings.TrimPrefix(h.Linkname, "/")
	}
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
	}
	if h.Typeflag == tar.TypeSymlink {
		h.Mode = 0o777 // what Linux reports for every symlink
	}
	return h
}

// waitLayers waits for the stage's layers to be written and returns the
// first error, in layer order.
func (s *stageState) waitLayers() error {
	var first error
	for _, fl := range s.pending {
		<-fl.done
		if fl.err != nil && first == nil {
			first = fl.err
		}
	}
	return first
}

// writeLayer writes sorted entries as a layer into the store: tar,
// compression, diff ID and digest in a single streaming pass, which also
// hashes every file's content for the layer's keys (copy_cache.go) and
// keeps the digests of context files.
func (s *stageState) writeLayer(ctx context.Context, sorted []*copyEntry) (v1.Layer, layerKeys, error) {
	st := s.b.opts.Store
	bw, err := st.NewBlobWriter(store.CallerHashes())
	if err != nil {
		return nil, layerKeys{}, err
	}
	defer bw.Abort()
	k := newLayerHasher()
	fh := sha256.New()
	// Big reads: one read(2) per MiB of content rather than per 32 KiB.
	buf := make([]byte, 1<<20)
	info, err := archive.WriteLayer(bw, s.b.opts.Compression, archive.TarOptions{Timestamp: s.b.opts.Timestamp}, func(tw *archive.TarWriter) error {
		for _, e := range sorted {
			if err := ctx.Err(); err != nil {
				return err
			}
			h := layerHeader(e)
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if !hasContent(h) {
				k.add(h, "", s.b.opts.Timestamp)
				continue
			}
			fh.Reset()
			read := time.Now()
			if err := copyContent(io.MultiWriter(tw, fh), e, h, buf); err != nil {
				return err
			}
			digest := hex.EncodeToString(fh.Sum(nil))
			s.noteDigest(e, digest, read)
			k.add(h, digest, s.b.opts.Timestamp)
		}
		return nil
	})
	if err != nil {
		return nil, layerKeys{}, err
	}
	if err := bw.Commit(info.Digest); err != nil {
		return nil, layerKeys{}, err
	}
	l, err := st.Layer(v1.Descriptor{
		MediaType: s.b.opts.Compression.MediaType(s.b.opts.Format == FormatOCI),
		Size:      info.Size,
		Digest:    info.Digest,
	}, info.DiffID)
	return l, k.sum(), err
}

func (s *stageState) cleanTemp() {
	for _, release := range s.tempDirs {
		release()
	}
	s.tempDirs = nil
}

// futureLayer is a layer being written: every method waits for it.
type futureLayer struct {
	// contentKey is the layer's content key (set before done is closed,
	// when the build keeps cache keys).
	contentKey string
	done       chan struct{}
	once       sync.Once
	layer      v1.Layer
	err        error
	mediaType  types.MediaType
}

func (f *futureLayer) resolve(l v1.Layer, err error) {
	f.once.Do(func() {
		f.layer, f.err = l, err
		close(f.done)
	})
}

func (f *futureLayer) wait() (v1.Layer, error) {
	<-f.done
	return f.layer, f.err
}

func (f *futureLayer) Digest() (v1.Hash, error) {
	l, err := f.wait()
	if err != nil {
		return v1.Hash{}, err
	}
	return l.Digest()
}

func (f *futureLayer) DiffID() (v1.Hash, error) {
	l, err := f.wait()
	if err != nil {
		return v1.Hash{}, err
	}
	return l.DiffID()
}

func (f *futureLayer) Size() (int64, error) {
	l, err := f.wait()
	if err != nil {
		return 0, err
	}
	return l.Size()
}

func (f *futureLayer) MediaType() (types.MediaType, error) { return f.mediaType, nil }

func (f *futureLayer) Compressed() (io.ReadCloser, error) {
	l, err := f.wait()
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

func (f *futureLayer) Uncompressed() (io.ReadCloser, error) {
	l, err := f.wait()
	if err != nil {
		return nil, err
	}
	return l.Uncompressed()
}
