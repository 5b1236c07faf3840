package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// trashDir holds, under a mapping key, directories a build is done with
// (working copies of tens of thousands of files) until they are removed.
const trashDir = "trash"

// Discard moves dir, a directory directly under the mapping key's
// directory (a working copy) or its temporary directory (TempDir: a
// step's), into the key's trash: a rename, so a build ends without
// waiting for a tree of tens of thousands of files to be deleted (on a
// container's overlayfs that takes as long as writing it), or for a
// helper process to be started to delete a few. EmptyTrash removes it
// later: the next build does in the background, and kiln prune does.
func (s *Store) Discard(key, dir string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	base := filepath.Join(s.root, key)
	if p := filepath.Dir(filepath.Clean(dir)); p != base && p != filepath.Join(base, "tmp") {
		return fmt.Errorf("rootfs store: %s is not a directory of mapping %s", dir, key)
	}
	trash := filepath.Join(base, trashDir)
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return err
	}
	dest, err := os.MkdirTemp(trash, filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	// dest is an empty directory: rename(2) replaces it (os.Rename
	// refuses any existing directory).
	if err := unix.Rename(dir, dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("rootfs store: moving %s to the trash: %w", dir, err)
	}
	return nil
}

// EmptyTrash removes, through u (the files may belong to subordinate ids),
// what Discard put in the trash of u's mapping. One process empties a
// trash at a time (an flock); another returns at once. Cancelling ctx
// stops it between (or in the middle of) directories: what is left stays
// in the trash for next time. It returns how many directories it removed.
func (s *Store) EmptyTrash(ctx context.Context, u Unpacker) (int, error) {
	key := u.Key()
	if err := checkKey(key); err != nil {
		return 0, err
	}
	trash := filepath.Join(s.root, key, trashDir)
	ents, err := os.ReadDir(trash)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lock, err := os.OpenFile(trash+".lock", os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return 0, nil // another process is at it
	}
	n := 0
	for _, e := range ents {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := u.Remove(ctx, filepath.Join(trash, e.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
