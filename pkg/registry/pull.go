package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/pkg/oci"
	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/store"
)

// artifactImages is a itself when it is an image, else its images.
func artifactImages(a oci.Artifact) ([]v1.Image, error) {
	if img, ok := oci.AsImage(a); ok {
		return []v1.Image{img}, nil
	}
	idx, ok := oci.AsIndex(a)
	if !ok {
		return nil, oci.ErrNotImageOrIndex
	}
	return indexImages(idx, 0)
}

// indexImages lists the images of idx and of its nested indexes.
func indexImages(idx v1.ImageIndex, depth int) ([]v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("image indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []v1.Image
	for _, c := range im.Manifests {
		switch {
		case c.MediaType.IsIndex():
			child, err := idx.ImageIndex(c.Digest)
			if err != nil {
				return nil, err
			}
			imgs, err := indexImages(child, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, imgs...)
		case c.MediaType.IsImage():
			img, err := idx.Image(c.Digest)
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
	}
	return out, nil
}

// Download stores every layer of images (those of ref) that st lacks,
// Options.Jobs at a time, each verified against its digest as the store writes
// it, and returns how many it downloaded; a layer whose download breaks in
// a way the transport could not resume starts again, up to Options.Retries
// times. Layers the store has are reported as existing to the client's
// progress reporter (Options.Progress). This is
// `kiln pull`'s transfer; the manifests and configs are the store's to
// write (store.WriteImage, WriteIndex) once the layers are in.
func (c *Client) Download(ctx context.Context, st *store.Store, images []v1.Image, ref string) (int, error) {
	rep := c.o.Progress
	if rep == nil {
		rep = progress.Discard
	}
	type job struct {
		img  v1.Image
		desc v1.Descriptor
	}
	var jobs []job
	seen := map[v1.Hash]bool{}
	for _, img := range images {
		m, err := img.Manifest()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", ref, err)
		}
		for _, l := range m.Layers {
			if seen[l.Digest] {
				continue
			}
			seen[l.Digest] = true
			ev := progress.Event{Op: progress.OpPull, Ref: ref, Kind: progress.KindLayer, Digest: l.Digest.String(), Size: l.Size}
			if st.HasBlob(l.Digest) {
				ev.Action = progress.Exists
				rep.Report(ev)
				continue
			}
			jobs = append(jobs, job{img, l})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(c.o.Jobs, 1))
	for _, j := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return c.downloadLayer(gctx, st, j.img, j.desc, ref, rep) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return len(jobs), ctx.Err()
}

// downloadLayer stores one layer, starting again (up to Options.Retries times)
// when the download breaks in a way the transport could not resume.
func (c *Client) downloadLayer(ctx context.Context, st *store.Store, img v1.Image, d v1.Descriptor, ref string, rep progress.Reporter) error {
	ev := progress.Event{Op: progress.OpPull, Ref: ref, Kind: progress.KindLayer, Digest: d.Digest.String(), Size: d.Size}
	var n int64
	err := Retry(ctx, max(c.o.Retries, 0), c.o.retryDelay(), func(err error) bool {
		return !errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, store.ErrDigestMismatch)
	}, func(err error) {
		e := ev
		e.Action, e.Error = progress.Retry, err.Error()
		rep.Report(e)
	}, func() (err error) {
		if n, err = fetchLayer(st, img, d, ev, rep); err != nil {
			return fmt.Errorf("pull %s: layer %s: %w", ref, d.Digest, err)
		}
		return nil
	})
	e := ev
	if err != nil {
		e.Action, e.Error = progress.Failed, err.Error()
		rep.Report(e)
		return err
	}
	e.Action, e.Current = progress.Done, n
	rep.Report(e)
	return nil
}

func fetchLayer(st *store.Store, img v1.Image, d v1.Descriptor, ev progress.Event, rep progress.Reporter) (int64, error) {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return 0, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	start := ev
	start.Action = progress.Start
	rep.Report(start)
	pr := progress.NewReader(rc, rep, ev)
	if err := st.WriteBlob(d.Digest, pr); err != nil {
		return 0, err
	}
	return pr.N(), nil
}

// Pulled is what Pull stored.
type Pulled struct {
	// Top describes what the reference names in its registry (an index,
	// or the image).
	Top v1.Descriptor
	// Stored is what the store now tags with the reference's name: the
	// image for the platform, or the whole index.
	Stored v1.Descriptor
	// UpToDate: nothing was downloaded and the name already named Stored.
	UpToDate bool
}

// Pull stores what ref names in st and tags it with ref's name: the image
// for platform (nil: the host's; see Image), or with all the whole index
// when ref names one. Only the layers st lacks are downloaded (Download);
// the manifests and configs are written once the layers are in.
func (c *Client) Pull(ctx context.Context, st *store.Store, ref name.Reference, platform *v1.Platform, all bool) (*Pulled, error) {
	res, err := c.Resolve(ctx, ref, platform, all)
	if err != nil {
		return nil, err
	}
	images, err := artifactImages(res.Artifact)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	downloaded, err := c.Download(ctx, st, images, ref.String())
	if err != nil {
		return nil, err
	}
	prev, prevErr := st.Resolve(ref.Name())
	desc, err := st.WriteArtifact(ctx, res.Artifact)
	if err != nil {
		return nil, fmt.Errorf("storing %s: %w", ref, err)
	}
	if err := st.Tag(ref.Name(), desc); err != nil {
		return nil, err
	}
	return &Pulled{Top: res.Top, Stored: desc, UpToDate: downloaded == 0 && prevErr == nil && prev.Digest == desc.Digest}, nil
}
