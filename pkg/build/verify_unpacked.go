package build

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

// VerifyUnpacked checks the unpacked layers of sb's mapping in the store
// st against the layers of the stored images (kiln prune --verify): each
// directory is compared with its layer's tar, itself checked against its
// diff ID while it is read. A directory that differs (tampered with), or
// whose layer no stored image has, is removed: a build unpacks the layer
// again, from its verified tar, when it needs it.
func VerifyUnpacked(ctx context.Context, st *store.Store, sb *sandbox.Sandbox) ([]rootfs.Verified, error) {
	dir := filepath.Join(st.Root(), "rootfs")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) || sb == nil || !sb.Overlay() {
		return nil, nil
	}
	rs, err := rootfs.Open(dir)
	if err != nil {
		return nil, err
	}
	layers, err := storedLayers(st)
	if err != nil {
		return nil, err
	}
	return rs.Reverify(ctx, sb, layers)
}

// storedLayers maps the chain ID of every layer of every stored image
// (index children included) to that layer.
func storedLayers(st *store.Store) (map[v1.Hash]rootfs.Layer, error) {
	out := map[v1.Hash]rootfs.Layer{}
	err := st.WalkImages(func(img v1.Image, cfg *v1.ConfigFile) {
		ls, err := img.Layers()
		if err != nil || len(ls) != len(cfg.RootFS.DiffIDs) {
			return
		}
		for i, c := range rootfs.ChainIDs(cfg.RootFS.DiffIDs) {
			if _, ok := out[c]; !ok {
				d := cfg.RootFS.DiffIDs[i]
				out[c] = rootfs.Layer{DiffID: d, Open: ls[i].Uncompressed, Name: d.String()[:19]}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
