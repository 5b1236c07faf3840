package build

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/store"
)

// dirImage is a directory --build-context as an image, for FROM NAME and
// RUN --mount from=NAME, as BuildKit's frontend makes it: its empty image
// for the platform (WORKDIR /) with the directory's files as the one
// layer, the directory's .dockerignore applied, owners, modes and mtimes
// as they are on disk (BuildKit's local source keeps the client's).
func (b *builder) dirImage(ref string, nc NamedContext, platform v1.Platform) (*imageSource, error) {
	key := "dir://" + nc.Dir + "|" + plat.Format(platform)
	b.mu.Lock()
	if src, ok := b.images[key]; ok {
		b.mu.Unlock()
		return src, nil
	}
	b.mu.Unlock()
	c, err := openContext(nc.Dir, "")
	if err != nil {
		return nil, fmt.Errorf("--build-context %s: %w", ref, err)
	}
	layer, err := b.dirLayer(c)
	if err != nil {
		return nil, fmt.Errorf("--build-context %s=%s: %w", ref, nc.Dir, err)
	}
	diffID, err := layer.DiffID()
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{OS: platform.OS, Architecture: platform.Architecture, Variant: platform.Variant,
		Created: v1.Time{Time: b.entryTime()},
		RootFS:  v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		Config:  v1.Config{WorkingDir: "/"}}
	img, err := assemble(cfg, []v1.Layer{layer}, b.opts.Format, nil)
	if err != nil {
		return nil, err
	}
	src := &imageSource{ref: "build context " + ref, img: img, cfg: cfg, layers: []v1.Layer{layer}, st: b.opts.Store}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev, ok := b.images[key]; ok {
		return prev, nil
	}
	b.images[key] = src
	return src, nil
}

// dirLayer writes the included files of c as a layer into the store.
func (b *builder) dirLayer(c *contextSource) (v1.Layer, error) {
	st := b.opts.Store
	bw, err := st.NewBlobWriter(store.CallerHashes())
	if err != nil {
		return nil, err
	}
	defer bw.Abort()
	info, err := archive.WriteLayer(bw, b.opts.Compression, archive.TarOptions{Timestamp: b.opts.Timestamp}, func(tw *archive.TarWriter) error {
		return c.walkIncluded("", func(p string, d fs.DirEntry, excluded bool) error {
			if excluded {
				return nil
			}
			return writeDirEntry(tw, c.abs(p), p)
		})
	})
	if err != nil {
		return nil, err
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

// writeDirEntry writes the file at full as the entry name: directories,
// regular files and symlinks (sockets, devices and fifos are left out).
func writeDirEntry(tw *archive.TarWriter, full, name string) error {
	fi, err := os.Lstat(full)
	if err != nil {
		return err
	}
	link := ""
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(full); err != nil {
			return err
		}
	case fi.IsDir(), fi.Mode().IsRegular():
	default:
		return nil
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h.Name = name
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, io.LimitReader(f, h.Size))
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s changed size while it was read", name)
	}
	return err
}
