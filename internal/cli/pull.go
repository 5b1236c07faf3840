package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

type pullFlags struct {
	platform     string
	allPlatforms bool
	quiet        bool
	creds        string
}

func newPullCommand(g *globals) *cobra.Command {
	var f pullFlags
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Download an image from a registry into the local store",
		Long: "Download an image (its layers, config and manifest) into the local store and tag it\n" +
			"with its name. From an index, the image for --platform (default: this machine's) is\n" +
			"pulled, or with --all-platforms the whole index. Layers the store has are not\n" +
			"downloaded again. Prints the full image name on stdout.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd.Context(), cmd, g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.platform, "platform", "", "platform to pull from an index (os/arch[/variant]; default: this machine's)")
	fl.BoolVar(&f.allPlatforms, "all-platforms", false, "pull every platform of an index and store the index")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the image name, no progress")
	fl.StringVar(&f.creds, "creds", "", "USERNAME[:PASSWORD] for the registry (instead of the auth files)")
	return cmd
}

// dockerName shows a reference as docker does after a pull:
// docker.io/library/busybox:latest.
func dockerName(ref name.Reference) string {
	s := ref.Name()
	if strings.HasPrefix(s, "index.docker.io/") {
		s = "docker.io/" + strings.TrimPrefix(s, "index.docker.io/")
	}
	return s
}

func runPull(ctx context.Context, cmd *cobra.Command, g *globals, f *pullFlags, image string) error {
	if err := g.checkRegistryFlags(cmd); err != nil {
		return err
	}
	if f.allPlatforms && f.platform != "" {
		return errors.New("--platform and --all-platforms cannot be used together")
	}
	ro := g.registryOptions(cmd)
	ref, err := registry.ParseReference(stripTransport(image), ro)
	if err != nil {
		return err
	}
	if f.creds != "" {
		c, err := g.credsOption("--creds", ref.Context().RegistryStr(), f.creds)
		if err != nil {
			return err
		}
		ro.Credentials = append(ro.Credentials, c)
	}
	var platform *v1.Platform
	if f.platform != "" {
		if platform, err = plat.Parse(f.platform); err != nil {
			return fmt.Errorf("--platform: %w", err)
		}
	}
	st, err := g.openStore(ctx, cmd)
	if err != nil {
		return err
	}
	rep, err := g.reporter(f.quiet)
	if err != nil {
		return err
	}
	defer rep.Close()
	ro.Progress = rep
	var logw io.Writer
	if g.textLog(f.quiet) {
		logw = g.stderr
	}
	if logw != nil {
		fmt.Fprintf(logw, "%s: Pulling from %s\n", ref.Identifier(), ref.Context().RepositoryStr())
	}

	res, err := registry.Resolve(ctx, ref, platform, f.allPlatforms, ro)
	if err != nil {
		return err
	}
	var images []v1.Image
	if res.Index != nil {
		if images, err = indexImages(res.Index, 0); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
	} else {
		images = []v1.Image{res.Image}
	}
	downloaded, err := downloadLayers(ctx, st, images, ref.String(), ro, rep)
	if err != nil {
		return err
	}
	prev, prevErr := st.Resolve(ref.Name())
	var desc v1.Descriptor
	if res.Index != nil {
		desc, err = st.WriteIndex(ctx, res.Index)
	} else {
		desc, err = st.WriteImage(ctx, res.Image)
	}
	if err != nil {
		return fmt.Errorf("storing %s: %w", ref, err)
	}
	if err := st.Tag(ref.Name(), desc); err != nil {
		return err
	}
	rep.Close()
	if logw != nil {
		fmt.Fprintf(logw, "Digest: %s\n", res.Top.Digest)
		if downloaded == 0 && prevErr == nil && prev.Digest == desc.Digest {
			fmt.Fprintf(logw, "Status: Image is up to date for %s\n", displayRepo(ref.Name()))
		} else {
			fmt.Fprintf(logw, "Status: Downloaded newer image for %s\n", displayRepo(ref.Name()))
		}
	}
	fmt.Fprintln(g.stdout, dockerName(ref))
	return nil
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

// downloadLayers stores every layer of images the store lacks, --jobs at a
// time, each verified against its digest, and returns how many it
// downloaded. Layers the store has are reported as existing.
func downloadLayers(ctx context.Context, st *store.Store, images []v1.Image, ref string, ro registry.Options, rep progress.Reporter) (int, error) {
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
	g.SetLimit(max(ro.Jobs, 1))
	for _, j := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return downloadLayer(gctx, st, j.img, j.desc, ref, ro, rep) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return len(jobs), ctx.Err()
}

// downloadLayer stores one layer, starting again (up to --retry times) when
// the download breaks in a way the transport could not resume.
func downloadLayer(ctx context.Context, st *store.Store, img v1.Image, d v1.Descriptor, ref string, ro registry.Options, rep progress.Reporter) error {
	ev := progress.Event{Op: progress.OpPull, Ref: ref, Kind: progress.KindLayer, Digest: d.Digest.String(), Size: d.Size}
	retries := ro.Retries
	if retries < 0 {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		n, err := fetchLayer(st, img, d, ev, rep)
		if err == nil {
			e := ev
			e.Action, e.Current = progress.Done, n
			rep.Report(e)
			return nil
		}
		err = fmt.Errorf("pull %s: layer %s: %w", ref, d.Digest, err)
		if attempt >= retries || ctx.Err() != nil || errors.Is(err, registry.ErrUnauthorized) ||
			errors.Is(err, registry.ErrDigestMismatch) || strings.Contains(err.Error(), "digest mismatch") {
			e := ev
			e.Action, e.Error = progress.Failed, err.Error()
			rep.Report(e)
			return err
		}
		e := ev
		e.Action, e.Error = progress.Retry, err.Error()
		rep.Report(e)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
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
