package build

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

// PruneUnpacked removes the unpacked layers RUN steps left in st (under
// sb's id mapping) that belong to no image st holds and that no build has
// used for grace. It returns how many it removed; a store without
// unpacked layers, or a sandbox that cannot run anything, removes none.
func PruneUnpacked(ctx context.Context, st *store.Store, sb *sandbox.Sandbox, grace time.Duration) (int, error) {
	dir := filepath.Join(st.Root(), "rootfs")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) || sb == nil || sb.Mode() == sandbox.ModeNone {
		return 0, nil
	}
	rs, err := rootfs.Open(dir)
	if err != nil {
		return 0, err
	}
	stacks, err := st.DiffIDStacks()
	if err != nil {
		return 0, err
	}
	keep := map[v1.Hash]bool{}
	for _, s := range stacks {
		for _, c := range rootfs.ChainIDs(s) {
			keep[c] = true
		}
	}
	// Working copies that builds discarded go first, whatever their age.
	if _, err := rs.EmptyTrash(ctx, sb); err != nil {
		return 0, err
	}
	return rs.Prune(ctx, sb, func(c v1.Hash) bool { return keep[c] }, grace)
}
