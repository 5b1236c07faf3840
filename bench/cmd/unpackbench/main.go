// Command unpackbench unpacks an OCI layout's image into a fresh rootfs
// store, layer by layer, and prints each layer's wall and CPU time (its
// own and the sandbox helper's). Layers are decoded as a build decodes a
// registry's (pkg/archive's decoder for their media type).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

func main() {
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "unpackbench:", err)
		os.Exit(1)
	}
}

// decompressed opens l as a build opens a registry's layer: compressed,
// decoded ahead by pkg/archive's decoder for its media type.
func decompressed(l v1.Layer) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		c, ok := archive.CompressionOf(mt)
		if !ok {
			return l.Uncompressed()
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		u, err := archive.NewReaderAhead(rc, c)
		if err != nil {
			rc.Close()
			return nil, err
		}
		return readCloser{u, rc}, nil
	}
}

type readCloser struct {
	io.ReadCloser
	under io.Closer
}

func (r readCloser) Close() error {
	err := r.under.Close()
	r.ReadCloser.Close()
	return err
}

func cpu(who int) (time.Duration, time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func run(storeDir, layoutDir string) error {
	ctx := context.Background()
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	sb, _, err := sandbox.New(ctx, sandbox.Options{})
	if err != nil {
		return err
	}
	st, err := rootfs.Open(storeDir)
	if err != nil {
		return err
	}
	var layers []rootfs.Layer
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			return err
		}
		layers = append(layers, rootfs.Layer{DiffID: d, Open: decompressed(l), Name: d.String()[:19]})
	}
	fmt.Printf("mode %s\n", sb.Summary())
	for i := range layers {
		t0 := time.Now()
		cu0, cs0 := cpu(syscall.RUSAGE_CHILDREN)
		su0, ss0 := cpu(syscall.RUSAGE_SELF)
		if _, err := st.Prepare(ctx, sb, layers[:i+1], nil); err != nil {
			return err
		}
		cu1, cs1 := cpu(syscall.RUSAGE_CHILDREN)
		su1, ss1 := cpu(syscall.RUSAGE_SELF)
		fmt.Printf("layer %d: wall %.2fs helper user %.2fs sys %.2fs, self user %.2fs sys %.2fs\n", i, time.Since(t0).Seconds(),
			(cu1 - cu0).Seconds(), (cs1 - cs0).Seconds(), (su1 - su0).Seconds(), (ss1 - ss0).Seconds())
	}
	return sb.Remove(ctx, storeDir)
}
