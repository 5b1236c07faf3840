package build

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/dockerfile"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

// imageSource is an image used as a base or by COPY --from: lazy until its
// files are needed.
type imageSource struct {
	ref    string
	img    v1.Image
	cfg    *v1.ConfigFile
	layers []v1.Layer
	st     *store.Store // verifies and keeps the layers it reads

	treeOnce sync.Once
	tree     *archive.Tree
	treeErr  error
}

// fullTree is the merged file tree of the image (reads every layer once).
func (src *imageSource) fullTree() (*archive.Tree, error) {
	src.treeOnce.Do(func() {
		src.tree, src.treeErr = archive.BuildTree(openers(src.st, src.layers))
		if src.treeErr != nil {
			src.treeErr = fmt.Errorf("reading the layers of %s: %w", src.ref, src.treeErr)
		}
	})
	return src.tree, src.treeErr
}

// image resolves an image reference for a platform: the local store first
// (as docker does), then the registry, lazily. Results are shared by every
// stage that names the same image.
func (b *builder) image(ctx context.Context, ref string, platform v1.Platform) (*imageSource, error) {
	key := ref + "|" + dockerfile.FormatPlatform(platform)
	b.mu.Lock()
	if src, ok := b.images[key]; ok {
		b.mu.Unlock()
		return src, nil
	}
	b.mu.Unlock()

	r, err := registry.ParseReference(ref, b.opts.Registry)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	fromRegistry := false
	if d, err := b.opts.Store.Resolve(r.Name()); err == nil {
		img, err = b.storeImage(d, platform)
		if err != nil {
			return nil, fmt.Errorf("local image %s: %w", ref, err)
		}
	} else {
		var desc v1.Descriptor
		fromRegistry = true
		img, desc, err = registry.Image(b.ctx, r, &platform, b.opts.Registry)
		if err != nil {
			return nil, err
		}
		if !strings.Contains(ref, "@") {
			b.noteUnpinned(ref, r.Context().Name()+"@"+desc.Digest.String())
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of %s: %w", ref, err)
	}
	if cfg == nil {
		return nil, fmt.Errorf("image %s has no config", ref)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", ref, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("malformed image %s: %d layers in the manifest but %d diff IDs in the config", ref, len(layers), len(cfg.RootFS.DiffIDs))
	}
	src := &imageSource{ref: ref, img: img, cfg: cfg, layers: layers, st: b.opts.Store}
	b.mu.Lock()
	defer b.mu.Unlock()
	if fromRegistry {
		if b.sources == nil {
			b.sources = map[v1.Hash]string{}
		}
		for _, l := range layers {
			if d, err := l.Digest(); err == nil {
				b.sources[d] = r.Context().Name()
			}
		}
	}
	if prev, ok := b.images[key]; ok {
		return prev, nil
	}
	b.images[key] = src
	return src, nil
}

func (b *builder) storeImage(d v1.Descriptor, platform v1.Platform) (v1.Image, error) {
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		idx, err := b.opts.Store.Index(d.Digest)
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		var avail []string
		for _, c := range m.Manifests {
			if c.Platform == nil {
				continue
			}
			if platformMatches(*c.Platform, platform) {
				return idx.Image(c.Digest)
			}
			avail = append(avail, dockerfile.FormatPlatform(*c.Platform))
		}
		return nil, fmt.Errorf("no image for platform %s (available: %s)", dockerfile.FormatPlatform(platform), strings.Join(avail, ", "))
	}
	return b.opts.Store.Image(d.Digest)
}

func platformMatches(have, want v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	norm := func(p v1.Platform) string {
		if p.Architecture == "arm64" && p.Variant == "" {
			return "v8"
		}
		return p.Variant
	}
	return want.Variant == "" || norm(have) == norm(want)
}

func (b *builder) noteUnpinned(ref, pinned string) {
	b.mu.Lock()
	if b.noted == nil {
		b.noted = map[string]bool{}
	}
	seen := b.noted[ref]
	b.noted[ref] = true
	b.mu.Unlock()
	if !seen {
		b.logf("note: %s is not pinned to a digest; it resolved to %s (pin it for reproducible builds)", ref, pinned)
	}
}

// initBase sets up the stage's starting config and layers from FROM.
func (s *stageState) initBase(ctx context.Context) error {
	st := s.run.stage
	platform := s.platform
	if st.Platform != "" {
		p, err := registry.ParsePlatform(st.Platform)
		if err != nil {
			return s.file.Errorf(st.Source.Location, "FROM --platform=%s: %v", st.Platform, err)
		}
		platform = *p
	}
	switch {
	case st.BaseStage != nil:
		prev := s.states[st.BaseStage].result
		s.cfg = cloneConfig(prev.cfg)
		s.layers = append([]v1.Layer(nil), prev.layers...)
		s.known = prev.known.clone()
		s.links = append([]chainLink(nil), prev.links...)
	case strings.EqualFold(st.Base, "scratch"):
		s.cfg = &v1.ConfigFile{OS: platform.OS, Architecture: platform.Architecture, Variant: platform.Variant}
		s.known = newKnownTree()
		s.known.scratch = true
		s.links = []chainLink{scratchLink(platform)}
	default:
		src, err := s.b.image(ctx, st.Base, platform)
		if err != nil {
			return s.file.Errorf(st.Source.Location, "FROM %s: %v", st.Base, err)
		}
		s.cfg = cloneConfig(src.cfg)
		s.layers = append([]v1.Layer(nil), src.layers...)
		s.known = newKnownTree()
		s.links = []chainLink{baseLink(src.cfg.RootFS.DiffIDs)}
	}
	s.nBase = len(s.layers)
	s.cfg.Created = v1.Time{Time: s.b.start}
	s.cfg.Container = ""
	s.cfg.Config.Image = ""
	if len(s.cfg.History) == 0 && len(s.layers) > 0 {
		// A base without history: give each layer an entry so that the
		// history stays aligned with the layers.
		for range s.layers {
			s.cfg.History = append(s.cfg.History, v1.History{CreatedBy: "(base layer of " + st.Base + ")"})
		}
	}
	return nil
}

func cloneConfig(c *v1.ConfigFile) *v1.ConfigFile {
	raw, err := json.Marshal(c)
	if err != nil {
		panic(err) // a ConfigFile always marshals
	}
	var out v1.ConfigFile
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return &out
}

// layerOpeners of the stage so far, bottom first.
func (s *stageState) layerOpeners() []archive.Opener { return openers(s.b.opts.Store, s.layers) }

var _ io.Reader
