package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/oci"
	plat "github.com/kiln-build/kiln/pkg/platform"
)

// maxIndexDepth bounds how many nested indexes Image follows.
const maxIndexDepth = 4

// Fetch gets the manifest (image or index) that ref names with one manifest
// GET. Failures are *Error values with clear messages (unauthorized naming
// the credential source, manifest unknown, name unknown, rate limited,
// unreachable) after the bounded retries. A Docker Hub reference is read
// from Options.Mirrors first, when there are any.
func (c *Client) Fetch(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	ctx = orBackground(ctx)
	cands, reqs, err := c.o.readCands(ref)
	if err != nil {
		return nil, err
	}
	for i, cand := range cands {
		d, err := remote.Get(cand, c.RemoteOptions(ctx)...)
		if err == nil {
			if err := c.verify(ctx, reqs, cand, d.Digest); err != nil {
				return nil, err
			}
			return d, nil
		}
		if i == len(cands)-1 || ctx.Err() != nil {
			return nil, c.describeErr(ctx, cand.String(), cand.Context(), err)
		}
	}
	return nil, nil // not reached: cands is never empty
}

// Image resolves ref to an image, lazily: only the manifest (and the
// index's, if ref names an index) is fetched now; the config is fetched when
// first asked for and each layer only when its Compressed or Uncompressed
// is called. For an index it picks the image for platform (nil: the host's,
// see platform.Default): OS and architecture must match; arm64 equals
// arm64/v8 and arm equals arm/v7; an amd64 variant is ignored unless
// requested. No match is an ErrNoPlatform error listing the platforms
// available. The returned descriptor is that of the chosen image manifest
// (with its digest, and its platform when it came from an index).
//
// The layers of the returned image are mountable: pushing it, or an image
// built on it, to another repository of the same registry mounts them
// instead of copying.
//
// A Docker Hub reference is read from Options.Mirrors first, when there are any;
// the image then comes from the first mirror that serves it whole
// (manifest and config).
func (c *Client) Image(ctx context.Context, ref name.Reference, platform *v1.Platform) (v1.Image, v1.Descriptor, error) {
	ctx = orBackground(ctx)
	cands, reqs, err := c.o.readCands(ref)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	for _, cand := range cands[:len(cands)-1] {
		img, d, err := c.image(ctx, cand, platform, reqs)
		if err == nil {
			if _, err = img.RawConfigFile(); err == nil {
				return img, d, nil
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	return c.image(ctx, cands[len(cands)-1], platform, reqs)
}

// image reads what ref names, checking the signatures reqs ask for of it
// before anything else is read.
func (c *Client) image(ctx context.Context, ref name.Reference, platform *v1.Platform, reqs *sigCheck) (v1.Image, v1.Descriptor, error) {
	want := plat.Default()
	if platform != nil {
		want = *platform
	}
	opts := c.RemoteOptions(ctx)
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
	}
	opts = append(opts, remote.Reuse(puller))

	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, v1.Descriptor{}, c.describeErr(ctx, ref.String(), ref.Context(), err)
	}
	if err := c.verify(ctx, reqs, ref, desc.Digest); err != nil {
		return nil, v1.Descriptor{}, err
	}
	for depth := 0; ; depth++ {
		switch desc.MediaType {
		case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
			return nil, v1.Descriptor{}, fmt.Errorf("%s: Docker schema 1 manifests are not supported; push the image again with a current client", ref)
		case types.OCIImageIndex, types.DockerManifestList:
			if depth >= maxIndexDepth {
				return nil, v1.Descriptor{}, fmt.Errorf("%s: image indexes nested more than %d deep", ref, maxIndexDepth)
			}
			idx, err := desc.ImageIndex()
			if err != nil {
				return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				return nil, v1.Descriptor{}, fmt.Errorf("%s: reading index: %w", ref, err)
			}
			child, err := choosePlatform(im, want)
			if err != nil {
				return nil, v1.Descriptor{}, &Error{Kind: ErrNoPlatform, Registry: ref.Context().RegistryStr(),
					msg: fmt.Sprintf("%s: %v", ref, err)}
			}
			childRef := ref.Context().Digest(child.Digest.String())
			cdesc, err := remote.Get(childRef, opts...)
			if err != nil {
				return nil, v1.Descriptor{}, c.describeErr(ctx, childRef.String(), ref.Context(), err)
			}
			if cdesc.MediaType.IsImage() || cdesc.MediaType.IsSchema1() {
				img, err := cdesc.Image()
				if err != nil {
					return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", childRef, err)
				}
				if err := c.o.checkImage(childRef.String(), img); err != nil {
					return nil, v1.Descriptor{}, err
				}
				d := child
				if d.Platform == nil {
					d.Platform = &want
				}
				c.o.noteConfig(img)
				return img, d, nil
			}
			desc = cdesc
		default:
			img, err := desc.Image()
			if err != nil {
				return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
			}
			if err := c.o.checkImage(ref.String(), img); err != nil {
				return nil, v1.Descriptor{}, err
			}
			c.o.noteConfig(img)
			return img, desc.Descriptor, nil
		}
	}
}

// noteConfig tells Stats the config digest of img (from its already fetched
// manifest), belt and braces to the transport's own manifest sniffing.
func (o Options) noteConfig(img v1.Image) {
	if o.Stats == nil {
		return
	}
	if m, err := img.Manifest(); err == nil && m != nil {
		o.Stats.NoteConfig(m.Config.Digest.String())
	}
}

// choosePlatform picks the manifest of im that best serves want.
func choosePlatform(im *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	best, bestScore := -1, 0
	for i, m := range im.Manifests {
		if m.Platform == nil {
			continue
		}
		if s := plat.Score(want, *m.Platform); s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		avail := availablePlatforms(im)
		list := "none"
		if len(avail) > 0 {
			var names []string
			for _, p := range avail {
				names = append(names, plat.Format(p))
			}
			list = strings.Join(names, ", ")
		}
		return v1.Descriptor{}, fmt.Errorf("no image for platform %s (available: %s)", plat.Format(want), list)
	}
	return im.Manifests[best], nil
}

// availablePlatforms lists the platforms of an index's images, leaving out
// attestation manifests (unknown/unknown).
func availablePlatforms(im *v1.IndexManifest) []v1.Platform {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" || m.Platform.Architecture == "unknown" {
			continue
		}
		k := plat.Format(*m.Platform)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, *m.Platform)
	}
	sort.SliceStable(out, func(i, j int) bool { return plat.Format(out[i]) < plat.Format(out[j]) })
	return out
}

// Platforms lists the platforms ref is available for. For an index that is
// its images' platforms (isIndex true, nothing but the index fetched); for a
// single image, the platform in its config (which is fetched).
func (c *Client) Platforms(ctx context.Context, ref name.Reference) ([]v1.Platform, bool, error) {
	ctx = orBackground(ctx)
	desc, err := c.Fetch(ctx, ref)
	if err != nil {
		return nil, false, err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, true, fmt.Errorf("%s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, true, fmt.Errorf("%s: reading index: %w", ref, err)
		}
		return availablePlatforms(im), true, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", ref, err)
	}
	if err := c.o.checkImage(ref.String(), img); err != nil {
		return nil, false, err
	}
	c.o.noteConfig(img)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, false, c.describeErr(ctx, ref.String()+" (config)", ref.Context(), err)
	}
	p := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant, OSVersion: cf.OSVersion}
	return []v1.Platform{p}, false, nil
}

// Push writes a (an image, or an index with all its images) to ref: blobs
// first (in parallel, skipping those the repository has, mounting those
// that came from another repository of the same registry), the manifest
// last. See Write.
func (c *Client) Push(ctx context.Context, ref name.Reference, a oci.Artifact) error {
	_, err := c.Write(ctx, a, []name.Reference{ref})
	return err
}

func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// Resolved is what a reference names, ready to be pulled.
type Resolved struct {
	// Top describes what the reference names: an index, or the image.
	Top v1.Descriptor
	// Artifact is the image for the requested platform, or the whole
	// index when all platforms were asked for and ref names an index.
	Artifact oci.Artifact
	// Desc describes Artifact (an image with its platform when it came
	// from an index).
	Desc v1.Descriptor
}

// Resolve finds what ref names for a pull: the image for platform (nil:
// the host's; see Image for the matching), or with all set the whole index
// when ref names one. A single image whose config names another platform
// than an explicitly requested one is an ErrNoPlatform error. Everything is
// lazy: layers are read only when their Compressed is called. References
// to Docker Hub are read through Options.Mirrors first.
func (c *Client) Resolve(ctx context.Context, ref name.Reference, platform *v1.Platform, all bool) (*Resolved, error) {
	ctx = orBackground(ctx)
	desc, err := c.Fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	switch {
	case desc.MediaType.IsIndex():
		if all {
			idx, err := desc.ImageIndex()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
			return &Resolved{Top: desc.Descriptor, Artifact: idx, Desc: desc.Descriptor}, nil
		}
		img, d, err := c.Image(ctx, ref.Context().Digest(desc.Digest.String()), platform)
		if err != nil {
			var re *Error
			if errors.As(err, &re) && re.Kind == ErrNoPlatform {
				return nil, &Error{Kind: ErrNoPlatform, Registry: re.Registry, msg: strings.Replace(re.msg, ref.Context().Digest(desc.Digest.String()).String(), ref.String(), 1), err: re.err}
			}
			return nil, err
		}
		return &Resolved{Top: desc.Descriptor, Artifact: img, Desc: d}, nil
	case desc.MediaType.IsSchema1():
		return nil, &Error{Kind: ErrUnsupportedMediaType, Registry: ref.Context().RegistryStr(),
			msg: fmt.Sprintf("%s: Docker schema 1 manifests are not supported; push the image again with a current client", ref)}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		if err := c.o.checkImage(ref.String(), img); err != nil {
			return nil, err
		}
		c.o.noteConfig(img)
		if platform != nil {
			cf, err := img.ConfigFile()
			if err != nil {
				return nil, c.describeErr(ctx, ref.String()+" (config)", ref.Context(), err)
			}
			have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
			if plat.Score(*platform, have) == 0 {
				return nil, &Error{Kind: ErrNoPlatform, Registry: ref.Context().RegistryStr(),
					msg: fmt.Sprintf("%s: the image is for %s, not %s", ref, plat.Format(have), plat.Format(*platform))}
			}
		}
		return &Resolved{Top: desc.Descriptor, Artifact: img, Desc: desc.Descriptor}, nil
	}
	return nil, &Error{Kind: ErrUnsupportedMediaType, Registry: ref.Context().RegistryStr(),
		msg: fmt.Sprintf("%s: %q is not an image or an image index", ref, desc.MediaType)}
}

// checkImage refuses an image whose manifest declares what no real image
// has, before anything it names is fetched: a config larger than the limit
// (MaxConfigSize) and negative sizes.
func (o Options) checkImage(ref string, img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	if m == nil {
		return fmt.Errorf("%s: no manifest", ref)
	}
	if m.Config.Size < 0 {
		return fmt.Errorf("%s: the manifest gives the config %s a negative size (%d)", ref, m.Config.Digest, m.Config.Size)
	}
	if limit := o.maxConfigSize(); m.Config.Size > limit {
		return fmt.Errorf("%s: the config %s is %d bytes, more than the %d allowed (raise --max-config-size if the image is trusted)", ref, m.Config.Digest, m.Config.Size, limit)
	}
	for _, l := range m.Layers {
		if l.Size < 0 {
			return fmt.Errorf("%s: the manifest gives layer %s a negative size (%d)", ref, l.Digest, l.Size)
		}
	}
	return nil
}
