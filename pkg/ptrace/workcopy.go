package ptrace

import (
	"archive/tar"
	"bufio"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/rootfs"
)

// ApplyLayer extracts the layer tar r onto the working copy dir (made
// when missing) as the caller, recording its owners and devices in dir's
// table. It returns notes on what could not be applied.
func ApplyLayer(dir string, r io.Reader) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t, err := LoadTable(TableFile(dir))
	if err != nil {
		return nil, err
	}
	notes, err := t.Apply(dir, r)
	if err != nil {
		return nil, err
	}
	return notes, t.Save(TableFile(dir))
}

// WalkDiff is rootfs.WriteWalkDiff (or, without snapIn, TakeSnapshot) of
// the working copy dir with the owners of its table: it compares dir with
// the snapshot in the file snapIn, writes the changes as an uncompressed
// layer tar to w and the new snapshot to snapOut. Entries of inodes that
// are gone leave the table.
func WalkDiff(dir, snapIn, snapOut string, exclude []string, w io.Writer) (rootfs.DiffStats, error) {
	file := TableFile(dir)
	t, err := LoadTable(file)
	if err != nil {
		return rootfs.DiffStats{}, err
	}
	live := map[Key]bool{}
	fix := func(st *unix.Stat_t) {
		if st.Uid == t.UID {
			live[keyOf(st)] = true
		}
		t.Fix(st)
	}
	var after rootfs.Snapshot
	var stats rootfs.DiffStats
	if snapIn == "" {
		after, err = rootfs.TakeSnapshotFix(dir, exclude, fix)
	} else {
		var before rootfs.Snapshot
		if before, err = rootfs.LoadSnapshot(snapIn); err != nil {
			return stats, err
		}
		bw := bufio.NewWriterSize(w, 256<<10)
		tw := tar.NewWriter(bw)
		after, stats, err = rootfs.WriteWalkDiffFix(dir, before, exclude, tw, fix)
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
	}
	if err != nil {
		return stats, err
	}
	t.Prune(live)
	if err := t.Save(file); err != nil {
		return stats, err
	}
	if snapOut != "" {
		if err := rootfs.SaveSnapshot(snapOut, after); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// RemoveAll removes a working copy (directories without write permission
// included) and its table.
func RemoveAll(dir string) error {
	_ = os.Remove(TableFile(dir))
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
