package harness

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the fixed timestamp of every file and config the harness makes
// (2024-01-01T00:00:00Z, the SOURCE_DATE_EPOCH of the shared test scripts).
var Epoch = time.Unix(1704067200, 0).UTC()

// DefaultPath is the PATH of the base images' configs.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is one entry of a synthetic layer.
type File struct {
	// Path is relative to the root, without a leading slash: "etc/passwd".
	Path string
	// Type is tar.TypeReg, tar.TypeDir or tar.TypeSymlink.
	Type byte
	// Mode is the permission bits, with setuid, setgid and sticky bits.
	Mode int64
	// UID and GID own the entry.
	UID, GID int
	// Data is the content of a regular file.
	Data []byte
	// Link is the target of a symlink.
	Link string
}

// Dir makes a directory File owned by root (as Reg and Symlink make
// files and links).
func Dir(p string, mode int64) File { return File{Path: p, Type: tar.TypeDir, Mode: mode} }

// Reg makes a regular file owned by root.
func Reg(p string, mode int64, data string) File {
	return File{Path: p, Type: tar.TypeReg, Mode: mode, Data: []byte(data)}
}

// Symlink makes a symbolic link owned by root.
func Symlink(p, target string) File {
	return File{Path: p, Type: tar.TypeSymlink, Mode: 0o777, Link: target}
}

// LayerTar returns a deterministic uncompressed tar of files: entries sorted
// by path, every missing parent directory added (0755, root), mtime Epoch,
// numeric owners only. A later entry for the same path replaces an earlier
// one.
func LayerTar(files []File) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if p == "." || p == "/" || path.IsAbs(p) || p == ".." || len(p) > 2 && p[:3] == "../" {
			return nil, fmt.Errorf("layer entry %q: want a relative path inside the root", f.Path)
		}
		f.Path = p
		byPath[p] = f
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = Dir(d, 0o755)
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		hdr := &tar.Header{
			Name:     p,
			Typeflag: f.Type,
			Mode:     f.Mode,
			Uid:      f.UID,
			Gid:      f.GID,
			ModTime:  Epoch,
			Format:   tar.FormatPAX,
		}
		switch f.Type {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = int64(len(f.Data))
		case tar.TypeSymlink:
			hdr.Linkname = f.Link
		default:
			return nil, fmt.Errorf("layer entry %q: unsupported type %q", p, f.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if f.Type == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// LayerFromTar makes an OCI gzip layer from an uncompressed tar in memory.
func LayerFromTar(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// NewImage assembles an OCI image (OCI manifest and config media types)
// from layers and a config, with one history entry per layer (createdBy[i])
// dated Epoch. cfg's RootFS and History are filled in.
func NewImage(cfg v1.ConfigFile, layers []v1.Layer, createdBy []string) (v1.Image, error) {
	if len(createdBy) != len(layers) {
		return nil, fmt.Errorf("NewImage: %d layers but %d history entries", len(layers), len(createdBy))
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if cfg.Created.IsZero() {
		cfg.Created = v1.Time{Time: Epoch}
	}
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	cfg.RootFS = v1.RootFS{Type: "layers"}
	cfg.History = nil
	img, err := mutate.ConfigFile(img, &cfg)
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: createdBy[i]},
		})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}
