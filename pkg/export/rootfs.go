package export

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/imagearchive"
	"github.com/kiln-build/kiln/pkg/oci"
)

func init() {
	register(TypeTar, kind{new: func(dest string, stdout io.Writer, _ bool) (Exporter, error) {
		return Tar{Dest: dest, Stdout: stdout}, nil
	}})
	register(TypeLocal, kind{new: func(dest string, _ io.Writer, _ bool) (Exporter, error) {
		if dest == Stdout {
			return nil, fmt.Errorf("type=local writes a directory: use type=tar,dest=- for stdout")
		}
		return Local{Dest: dest}, nil
	}})
}

// Tar writes the image's flattened root filesystem (layers applied in
// order, whiteouts honoured) as one tar stream, as buildx's type=tar does;
// a multi-platform build puts each platform under OS_ARCH[_VARIANT]/.
type Tar struct {
	Dest   string
	Stdout io.Writer
}

// Export implements Exporter.
func (t Tar) Export(_ context.Context, items []imagearchive.Item) error {
	imgs, err := rootfsImages(items)
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	err = writeDest(t.Dest, t.Stdout, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, pi := range imgs {
			if err := WriteRootfs(tw, pi.img, pi.prefix); err != nil {
				return err
			}
		}
		return tw.Close()
	})
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	return nil
}

func (t Tar) String() string { return describe("tar", t.Dest) }

// Local writes the image's flattened root filesystem into the directory
// Dest (created if missing), as buildx's type=local does: owners are kept
// when kiln runs as root, else the files are the caller's; a
// multi-platform build writes each platform to Dest/OS_ARCH[_VARIANT].
type Local struct {
	Dest string
}

// Export implements Exporter.
func (l Local) Export(_ context.Context, items []imagearchive.Item) error {
	imgs, err := rootfsImages(items)
	if err != nil {
		return fmt.Errorf("%s: %w", l, err)
	}
	if err := os.MkdirAll(l.Dest, 0o755); err != nil {
		return fmt.Errorf("%s: %w", l, err)
	}
	for _, pi := range imgs {
		dir := filepath.Join(l.Dest, filepath.FromSlash(pi.prefix))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("%s: %w", l, err)
		}
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := WriteRootfs(tw, pi.img, "")
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		err := archive.Extract(pr, dir, archive.ExtractOptions{Chown: os.Geteuid() == 0})
		pr.CloseWithError(err)
		if err != nil {
			return fmt.Errorf("%s: %w", l, err)
		}
	}
	return nil
}

func (l Local) String() string { return describe("local", l.Dest) }

type prefixedImage struct {
	img    v1.Image
	prefix string // "" or "os_arch[_variant]/"
}

// rootfsImages picks what a filesystem export writes: the one image, or
// every platform of an index under its own directory. Items that name the
// same image (several tags) are written once.
func rootfsImages(items []imagearchive.Item) ([]prefixedImage, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("nothing to export")
	}
	it := items[0]
	if img, ok := oci.AsImage(it.Artifact); ok {
		return []prefixedImage{{img: img}}, nil
	}
	idx, ok := oci.AsIndex(it.Artifact)
	if !ok {
		return nil, oci.ErrNotImageOrIndex
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []prefixedImage
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("index entry %s: %w", d.Digest, err)
		}
		p := "unknown"
		if d.Platform != nil {
			p = d.Platform.OS + "_" + d.Platform.Architecture
			if d.Platform.Variant != "" {
				p += "_" + d.Platform.Variant
			}
		}
		out = append(out, prefixedImage{img: img, prefix: p + "/"})
	}
	return out, nil
}

// WriteRootfs writes img's merged file tree to tw under prefix:
// directories, symlinks and special files in path order (parents first),
// then regular files as each layer that holds their content is streamed,
// then hardlinks to those files. A hardlink whose target is not a regular
// file of the merged tree is written as a regular file with its content.
func WriteRootfs(tw *tar.Writer, img v1.Image, prefix string) error {
	layers, err := archive.ImageLayers(img)
	if err != nil {
		return err
	}
	tree, err := archive.BuildTree(layers)
	if err != nil {
		return err
	}
	var files []string
	var links []*archive.Node
	contentSize := map[string]int64{}
	err = tree.Walk("", func(n *archive.Node) error {
		if n.Path == "" {
			return nil
		}
		switch n.Header.Typeflag {
		case tar.TypeReg:
			files = append(files, n.Path)
			contentSize[n.Path] = n.Header.Size
			return nil
		case tar.TypeLink:
			if t, ok := tree.Lookup(n.Header.Linkname); ok && t.Header.Typeflag == tar.TypeReg {
				links = append(links, n)
				return nil
			}
			files = append(files, n.Path) // written with its target's content
			return nil
		}
		return writeHeader(tw, n.Header, prefix+n.Path, n.IsDir())
	})
	if err != nil {
		return err
	}
	err = tree.ReadFiles(layers, files, func(n *archive.Node, r io.Reader) error {
		h := n.Header
		if h.Typeflag == tar.TypeLink {
			h.Typeflag, h.Linkname = tar.TypeReg, ""
			if t, ok := tree.Lookup(n.Header.Linkname); ok {
				h.Size = t.Header.Size
			}
		}
		if err := writeHeader(tw, h, prefix+n.Path, false); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, r, h.Size); err != nil {
			return fmt.Errorf("%s: %w", n.Path, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range links {
		h := n.Header
		h.Linkname = prefix + h.Linkname
		if err := writeHeader(tw, h, prefix+n.Path, false); err != nil {
			return err
		}
	}
	return nil
}

func writeHeader(tw *tar.Writer, h tar.Header, name string, dir bool) error {
	h.Name = path.Clean(name)
	if dir {
		h.Name += "/"
	}
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
	}
	h.Format = tar.FormatPAX
	if err := tw.WriteHeader(&h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
