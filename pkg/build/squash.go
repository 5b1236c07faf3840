package build

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/store"
)

// Squash says which layers of the built image become one (podman's
// --squash and --squash-all).
type Squash string

const (
	// SquashNone keeps every step's layer.
	SquashNone Squash = ""
	// SquashNew makes the layers the build added into one, on top of the
	// layers of the image the target stage starts from (podman's and
	// buildah's --squash; the classic docker builder's).
	SquashNew Squash = "new"
	// SquashAll makes the whole filesystem one layer (podman's
	// --squash-all).
	SquashAll Squash = "all"
)

// squash makes the target stage's image one of fewer layers, as podman
// does: the squashed layer is the filesystem the squashed layers gave
// (whiteouts applied; with SquashNew, what they deleted from the base is
// kept as whiteouts); the history keeps an entry per instruction of the
// build, all empty but the last, which carries the squashed layer, after
// the base's entries (SquashNew) or without them (SquashAll, as podman).
// The step cache is untouched: each step's layer is still cached, and the
// same layers give the same squashed layer.
func (b *builder) squash(ctx context.Context, res *stageResult) (v1.Image, error) {
	mode := b.opts.Squash
	keep, keepHist := res.extLayers, min(res.extHistory, len(res.cfg.History))
	squashed := res.layers[keep:]
	if mode == SquashAll {
		squashed = res.layers
	}
	if len(squashed) == 0 {
		return res.image, nil
	}
	cfg := cloneConfig(res.cfg)
	news := append([]v1.History(nil), cfg.History[keepHist:]...)
	if len(news) == 0 {
		news = []v1.History{{Created: v1.Time{Time: b.start}, Comment: "kiln: squashed"}}
	}
	for i := range news {
		news[i].EmptyLayer = i < len(news)-1
	}
	if mode == SquashAll {
		keep, keepHist = 0, 0
	}
	cfg.History = append(cfg.History[:keepHist:keepHist], news...)
	layer := squashed[0]
	if len(squashed) > 1 || mode == SquashAll {
		var err error
		if layer, err = b.squashLayers(ctx, squashed, mode == SquashNew); err != nil {
			return nil, err
		}
		if d, err := layer.Digest(); err == nil {
			b.opts.Progress.Notef("", "squashed %d layers into %s", len(squashed), shortDigest(d))
		}
	}
	layers := append(res.layers[:keep:keep], layer)
	diffID, err := layer.DiffID()
	if err != nil {
		return nil, err
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs[:keep:keep], diffID)
	return assemble(cfg, layers, b.opts.Format, nil)
}

// squashLayers writes the one layer that layers make into the store.
func (b *builder) squashLayers(ctx context.Context, layers []v1.Layer, overBase bool) (v1.Layer, error) {
	st := b.opts.Store
	openers := make([]archive.Opener, len(layers))
	for i, l := range layers {
		openers[i] = func() (io.ReadCloser, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return l.Uncompressed()
		}
	}
	tmp, release, err := st.ShortLivedDir()
	if err != nil {
		return nil, err
	}
	defer release()
	bw, err := st.NewBlobWriter(store.CallerHashes())
	if err != nil {
		return nil, err
	}
	defer bw.Abort()
	info, err := archive.WriteLayer(bw, b.opts.Compression, archive.TarOptions{}, func(tw *archive.TarWriter) error {
		return archive.Squash(tw, openers, archive.SquashOptions{OverBase: overBase, TempDir: tmp})
	})
	if err != nil {
		return nil, fmt.Errorf("squashing %d layers: %w", len(layers), err)
	}
	if err := bw.Commit(info.Digest); err != nil {
		return nil, err
	}
	return st.Layer(v1.Descriptor{
		MediaType: b.opts.Compression.MediaType(b.opts.Format == FormatOCI),
		Size:      info.Size,
		Digest:    info.Digest,
	}, info.DiffID)
}
