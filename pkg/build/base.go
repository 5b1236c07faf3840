package build

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
	plat "github.com/kiln-build/kiln/pkg/platform"
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
	// single is set when the reference names one image, not an index:
	// nothing chose it for the platform asked for (see checkPlatform).
	single bool

	// lazyTree is the merged view of its files, made from its layers'
	// indexes on first need (index.go).
	lazyTree
}

// image resolves an image reference for a platform: the local store first
// (as docker does), then the registry, lazily. Results are shared by every
// stage that names the same image.
func (b *builder) image(ctx context.Context, ref string, platform v1.Platform) (*imageSource, error) {
	// --build-context NAME=…: another image, or an OCI layout's.
	if named, nref, err := b.namedImage(ctx, ref, platform); err != nil || named != nil {
		return named, err
	} else {
		ref = nref
	}
	key := ref + "|" + plat.Format(platform)
	b.mu.Lock()
	if src, ok := b.images[key]; ok {
		b.mu.Unlock()
		return src, nil
	}
	b.mu.Unlock()

	r, err := b.opts.Registry.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if err := b.opts.Registry.Options().Policy.CheckPinned(r); err != nil {
		return nil, err
	}
	var img v1.Image
	fromRegistry, single := false, false
	d, storeErr := b.opts.Store.Resolve(r.Name())
	useStore := storeErr == nil && b.opts.Pull != PullAlways && b.opts.Pull != PullNewer
	if storeErr != nil && b.opts.Pull == PullNever {
		return nil, fmt.Errorf("%s is not in the local store (--pull=never)", ref)
	}
	var desc v1.Descriptor
	var regErr error
	if !useStore {
		img, desc, regErr = b.opts.Registry.Image(b.ctx, r, &platform)
		if regErr != nil && b.opts.Pull == PullNewer && storeErr == nil {
			b.opts.Progress.Warnf("", "%s: the registry cannot be reached (%v); using the local store's copy (--pull=newer)", ref, regErr)
			useStore = true
		} else if regErr != nil {
			return nil, regErr
		}
	}
	if useStore {
		single = !d.MediaType.IsIndex()
		img, err = b.storeImage(d, platform)
		if err != nil {
			return nil, fmt.Errorf("local image %s: %w", ref, err)
		}
	} else {
		fromRegistry = true
		// An image picked from an index has its platform in the index's
		// descriptor.
		single = desc.Platform == nil
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
	src := &imageSource{ref: ref, img: img, cfg: cfg, layers: layers, st: b.opts.Store, single: single}
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
			if plat.Matches(*c.Platform, platform) {
				return idx.Image(c.Digest)
			}
			avail = append(avail, plat.Format(*c.Platform))
		}
		return nil, fmt.Errorf("no image for platform %s (available: %s)", plat.Format(platform), strings.Join(avail, ", "))
	}
	return b.opts.Store.Image(d.Digest)
}

// imagePlatform is the platform an image's config declares (zero when it
// names no architecture).
func imagePlatform(cfg *v1.ConfigFile) v1.Platform {
	return v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
}

// checkPlatform refuses a single-platform image (a manifest, not an index:
// no registry chose it for want) whose config declares another platform
// when want was asked for (--platform, FROM --platform): building on it
// would give an image of the wrong architecture under want's name. An
// image that declares no architecture is taken as it is. When nobody asked
// (no --platform), the base's platform is the stage's, as in BuildKit, and
// a base that is not the host's is noted.
func (b *builder) checkPlatform(src *imageSource, want v1.Platform, explicit bool) error {
	have := imagePlatform(src.cfg)
	if !src.single || have.Architecture == "" || plat.Matches(have, want) {
		return nil
	}
	if explicit {
		return fmt.Errorf("the image is for %s only (a single-platform image, not an index), not %s: use a base that has %s, or build for %s",
			plat.Format(plat.Normalize(have)), plat.Format(want),
			plat.Format(want), plat.Format(plat.Normalize(have)))
	}
	b.opts.Progress.Warnf("", "base image %s is for %s, not this machine's %s: the image is built for %s (pass --platform to choose)",
		src.ref, plat.Format(plat.Normalize(have)), plat.Format(want),
		plat.Format(plat.Normalize(have)))
	return nil
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
		b.opts.Progress.Notef("", "note: %s is not pinned to a digest; it resolved to %s (pin it for reproducible builds)", ref, pinned)
	}
}

// initBase sets up the stage's starting config and layers from FROM.
func (s *stageState) initBase(ctx context.Context) error {
	st := s.run.stage
	platform := s.platform
	explicit := len(s.b.opts.Platforms) > 0
	if st.Platform != "" {
		p, err := plat.Parse(st.Platform)
		if err != nil {
			return s.file.Errorf(st.Source.Location, "FROM --platform=%s: %v", st.Platform, err)
		}
		platform, explicit = plat.Normalize(*p), true
	}
	switch {
	case st.BaseStage != nil:
		prev := s.states[st.BaseStage].result
		s.cfg = cloneConfig(prev.cfg)
		s.layers = append([]v1.Layer(nil), prev.layers...)
		s.known = prev.known.clone()
		s.links = append([]chainLink(nil), prev.links...)
		s.extLayers, s.extHistory = prev.extLayers, prev.extHistory
	case strings.EqualFold(st.Base, "scratch"):
		// BuildKit's empty image: the platform, WorkingDir / (PATH below).
		s.cfg = &v1.ConfigFile{OS: platform.OS, Architecture: platform.Architecture, Variant: platform.Variant,
			Config: v1.Config{WorkingDir: "/"}}
		s.known = newKnownTree()
		s.known.scratch = true
		s.links = []chainLink{scratchLink(platform)}
	default:
		src, err := s.b.image(ctx, st.Base, platform)
		if err == nil {
			err = s.b.checkPlatform(src, platform, explicit)
		}
		if err != nil {
			return s.file.Errorf(st.Source.Location, "FROM %s: %v", st.Base, err)
		}
		s.cfg = cloneConfig(src.cfg)
		s.layers = append([]v1.Layer(nil), src.layers...)
		s.known = newKnownTree()
		s.known.base = src
		s.links = []chainLink{baseLink(src.cfg.RootFS.DiffIDs)}
	}
	if s.cfg.OS != "windows" && !hasEnv(s.cfg.Config.Env, "PATH") {
		// BuildKit gives every stage without PATH (scratch included) the
		// default one.
		s.cfg.Config.Env = append(s.cfg.Config.Env, "PATH="+DefaultPath)
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
	if st.BaseStage == nil {
		s.extLayers, s.extHistory = len(s.layers), len(s.cfg.History)
	}
	return nil
}

// DefaultPath is the PATH BuildKit (and docker's classic builder) give an
// image that has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
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
// A base layer being read for its index is waited for: it is then read
// from the store, not fetched twice.
func (s *stageState) layerOpeners() []archive.Opener {
	if s.known != nil && s.known.base != nil {
		s.known.base.awaitTree(s.b.ctx)
	}
	return openers(s.b.opts.Store, s.layers)
}

var _ io.Reader
