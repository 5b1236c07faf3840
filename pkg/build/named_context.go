package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kiln-build/kiln/pkg/dockerfile"
	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/registry"
)

// NamedContext is one buildx --build-context NAME=VALUE: what FROM NAME,
// COPY --from=NAME and RUN --mount from=NAME read instead of the image
// NAME. Exactly one field is set.
type NamedContext struct {
	// Dir is a local directory (COPY --from only).
	Dir string
	// Image is a docker-image:// reference.
	Image string
	// Layout is an oci-layout:// directory; LayoutRef picks its image by
	// tag or digest ("" when it holds one).
	Layout, LayoutRef string
}

// ParseNamedContext reads --build-context NAME=DIR|docker-image://REF|
// oci-layout://DIR[:TAG|@DIGEST].
func ParseNamedContext(s string) (string, NamedContext, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" || val == "" {
		return "", NamedContext{}, fmt.Errorf("--build-context %q: want NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://DIR", s)
	}
	var nc NamedContext
	switch {
	case strings.HasPrefix(val, "docker-image://"):
		nc.Image = strings.TrimPrefix(val, "docker-image://")
		if _, err := registry.ParseReference(nc.Image); err != nil {
			return "", NamedContext{}, fmt.Errorf("--build-context %s: %v", s, err)
		}
	case strings.HasPrefix(val, "oci-layout://"):
		dir := strings.TrimPrefix(val, "oci-layout://")
		if i := strings.LastIndex(dir, "@"); i >= 0 {
			dir, nc.LayoutRef = dir[:i], dir[i+1:]
		} else if i := strings.LastIndex(dir, ":"); i > strings.LastIndex(dir, "/") {
			dir, nc.LayoutRef = dir[:i], dir[i+1:]
		}
		if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
			return "", NamedContext{}, fmt.Errorf("--build-context %s: %s is not an OCI layout: %v", s, dir, err)
		}
		nc.Layout = dir
	case strings.Contains(val, "://") || strings.HasPrefix(val, "target:"):
		return "", NamedContext{}, fmt.Errorf("--build-context %s: kiln takes a directory, docker-image:// or oci-layout:// (not git or HTTP contexts, nor bake targets)", s)
	default:
		fi, err := os.Stat(val)
		if err != nil {
			return "", NamedContext{}, fmt.Errorf("--build-context %s: %v", s, err)
		}
		if !fi.IsDir() {
			return "", NamedContext{}, fmt.Errorf("--build-context %s: %s is not a directory", s, val)
		}
		nc.Dir = val
	}
	return name, nc, nil
}

// namedContext finds the --build-context for ref: by its exact name, or
// by the same normalised image name (alpine is docker.io/library/alpine:latest).
func (b *builder) namedContext(ref string) (NamedContext, bool) {
	if len(b.opts.NamedContexts) == 0 {
		return NamedContext{}, false
	}
	if nc, ok := b.opts.NamedContexts[ref]; ok {
		return nc, true
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return NamedContext{}, false
	}
	for name, nc := range b.opts.NamedContexts {
		if n, err := registry.ParseReference(name); err == nil && n.Name() == r.Name() {
			return nc, true
		}
	}
	return NamedContext{}, false
}

// namedContextFS is a directory --build-context for COPY --from.
func (b *builder) namedContextFS(name string) (sourceFS, bool, error) {
	nc, ok := b.namedContext(name)
	if !ok || nc.Dir == "" {
		return nil, false, nil
	}
	c, err := openContext(nc.Dir, "")
	if err != nil {
		return nil, true, fmt.Errorf("--build-context %s: %w", name, err)
	}
	return &namedDirFS{contextFS: contextFS{c: c}, name: name}, true, nil
}

type namedDirFS struct {
	contextFS
	name string
}

func (f *namedDirFS) describe() string     { return "build context " + f.name }
func (f *namedDirFS) notFoundHint() string { return "" }

// namedImage resolves ref through a --build-context: the image it names
// instead (newRef, ok), or the image of an OCI layout or of a directory
// (src; dir_image.go).
func (b *builder) namedImage(ctx context.Context, ref string, platform v1.Platform) (src *imageSource, newRef string, err error) {
	nc, ok := b.namedContext(ref)
	switch {
	case !ok:
		return nil, ref, nil
	case nc.Image != "":
		return nil, nc.Image, nil
	case nc.Dir != "":
		src, err := b.dirImage(ref, nc, platform)
		return src, "", err
	}
	key := "oci-layout://" + nc.Layout + "|" + nc.LayoutRef + "|" + plat.Format(platform)
	b.mu.Lock()
	if src, ok := b.images[key]; ok {
		b.mu.Unlock()
		return src, "", nil
	}
	b.mu.Unlock()
	img, single, err := layoutImage(nc.Layout, nc.LayoutRef, platform)
	if err != nil {
		return nil, "", fmt.Errorf("--build-context %s=oci-layout://%s: %w", ref, nc.Layout, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, "", fmt.Errorf("--build-context %s: reading the config: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, "", fmt.Errorf("--build-context %s: %w", ref, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, "", fmt.Errorf("--build-context %s: malformed image: %d layers, %d diff IDs", ref, len(layers), len(cfg.RootFS.DiffIDs))
	}
	src = &imageSource{ref: "oci-layout://" + nc.Layout, img: img, cfg: cfg, layers: layers, st: b.opts.Store, single: single}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.images[key]; ok {
		return prev, "", nil
	}
	b.images[key] = src
	return src, "", nil
}

// layoutImage picks an image from the OCI layout dir: by digest or tag
// (org.opencontainers.image.ref.name), or its only manifest; from an
// index, the platform's.
func layoutImage(dir, ref string, platform v1.Platform) (v1.Image, bool, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, false, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, false, err
	}
	var found []v1.Descriptor
	for _, d := range m.Manifests {
		name := d.Annotations["org.opencontainers.image.ref.name"]
		switch {
		case ref == "":
			found = append(found, d)
		case strings.HasPrefix(ref, "sha256:") && d.Digest.String() == ref:
			found = append(found, d)
		case name == ref || strings.HasSuffix(name, ":"+ref):
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && ref != "":
		return nil, false, fmt.Errorf("no image %s in the layout", ref)
	case len(found) == 0:
		return nil, false, fmt.Errorf("the layout holds no image")
	case len(found) > 1:
		return nil, false, fmt.Errorf("the layout holds %d images: name one (oci-layout://DIR:TAG or @sha256:…)", len(found))
	}
	d := found[0]
	if d.MediaType.IsImage() {
		img, err := idx.Image(d.Digest)
		return img, true, err
	}
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, false, err
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, false, err
	}
	var avail []string
	for _, c := range cm.Manifests {
		if c.Platform != nil && plat.Matches(*c.Platform, platform) {
			img, err := child.Image(c.Digest)
			return img, false, err
		}
		if c.Platform != nil {
			avail = append(avail, plat.Format(*c.Platform))
		}
	}
	return nil, false, fmt.Errorf("no image for platform %s (available: %s)", plat.Format(platform), strings.Join(avail, ", "))
}

// replacedStages are the stages of f that a --build-context of the same
// name replaces, as BuildKit's frontend does (the context wins over the
// stage): true where the context is an image, false a directory (see
// dockerfile.PlanOptions.Replaced).
func (b *builder) replacedStages(f *dockerfile.File) map[string]bool {
	var m map[string]bool
	for _, st := range f.Stages {
		name := strings.ToLower(st.Name)
		if name == "" {
			continue
		}
		if nc, ok := b.namedContext(name); ok {
			if m == nil {
				m = map[string]bool{}
			}
			m[name] = nc.Dir == ""
		}
	}
	return m
}
