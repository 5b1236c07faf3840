package store

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// A store is private to the user who runs kiln, as docker's data root is
// root's: its root directory is 0700 and what kiln writes in it 0700
// (directories) and 0600 (files), because base layers, build secrets'
// traces in RUN layers and registry sources may be anyone's business but
// the other users'.

// dirMode is the mode of directories kiln makes in the store.
func (s *Store) dirMode() os.FileMode { return 0o700 }

// fileMode is the mode of files kiln writes in the store.
func (s *Store) fileMode() os.FileMode { return 0o600 }

// privateRoot makes the store's root directory (0700 when it is new) and
// takes group and other permissions away from an existing one of this
// user's (a store made before stores were private): with the root closed,
// the files inside are out of other users' reach whatever their own
// modes. A root of another owner (a volume a pod mounts) is left as it
// is.
func privateRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "open", Path: root, Err: errors.New("not a directory")}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return os.Chmod(root, fi.Mode().Perm()&0o700)
}
